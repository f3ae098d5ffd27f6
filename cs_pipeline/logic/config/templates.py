"""Message templates: "{days_since_last_login} days" or "{license_activation_rate:.0%}"."""

from __future__ import annotations

import datetime as dt
import math
import re
import string
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

_SAMPLES = {"int": 7, "float": 0.5, "text": "x", "bool": True, "date": dt.date(2025, 1, 31)}


def format_spec_fits(spec: str, kind: str) -> bool:
    try:
        format(_SAMPLES.get(kind, "x"), spec)
    except (ValueError, TypeError):
        return False
    return True


_PLACEHOLDER = re.compile(r"[a-z_][a-z0-9_]*")


def placeholders(template: str) -> list[tuple[str, str]]:
    """The (variable, format spec) placeholders of a template; ValueError when one is malformed.

    Only plain names are allowed (no `{a.b}`, `{a[0]}` or `{a!r}`): a template reads values, it
    never reaches into them. Write `{{` and `}}` for literal braces.
    """
    found = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as error:
        raise ValueError(f"malformed placeholder: {error}; write '{{{{' or '}}}}' for a literal brace") from None
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if not _PLACEHOLDER.fullmatch(name) or "__" in name or conversion or "{" in (spec or ""):
            raise ValueError(f"placeholder {{{name}}} must be a variable name, like {{score}} or {{arr:,.0f}}")
        found.append((name, spec or ""))
    return found


def render(template: str, values: Mapping[str, Any]) -> str:
    """Fill a template's placeholders from `values` (an account_health row, as a dict).

    Without a format spec: floats with 2 decimals, whole numbers as they are, rates as given
    (write `{license_activation_rate:.0%}` for a percentage), dates as YYYY-MM-DD, None as "n/a".
    """
    pieces = []
    for literal, name, spec, _conversion in string.Formatter().parse(template):
        pieces.append(literal)
        if name is None:
            continue
        if name not in values:
            raise KeyError(f"template placeholder {{{name}}} has no value")
        pieces.append(_format_value(values[name], spec or ""))
    return "".join(pieces)


def _format_value(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if spec:
        try:
            return format(value, spec)
        except (ValueError, TypeError):
            pass  # a spec that does not fit this value: fall back rather than fail a notification
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (float, Decimal)):
        return f"{value:.2f}"
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)
