"""Validating a YAML document with a pydantic model, every error translated to one line naming
the file, the line and the field."""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ValidationError

from cs_pipeline.logic.config.errors import ConfigError, ConfigProblem
from cs_pipeline.logic.config.yaml_files import Document, read_document


def validate(model_class: type[BaseModel], document: Document, context: dict | None = None):
    try:
        return model_class.model_validate(document.data, context=context)
    except ConfigProblem as problem:
        raise document.error(problem.loc, problem.reason, problem.choices) from None
    except ValidationError as error:
        raise _translate(error, model_class, document) from None


def _translate(error: ValidationError, model_class: type[BaseModel], document: Document) -> ConfigError:
    # An unknown key usually explains the "missing" error next to it (a misspelt 'severty:'),
    # so it is reported first.
    problems = sorted(error.errors(include_url=False), key=lambda e: e["type"] != "extra_forbidden")
    first = problems[0]
    loc = tuple(first["loc"])
    kind = first["type"]
    ctx = first.get("ctx") or {}
    if kind == "extra_forbidden":
        allowed = _field_names(model_class, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return document.error(loc, f"unknown field{hint}", allowed)
    if kind == "missing":
        return document.error(loc, "is required")
    if kind in ("literal_error", "enum"):
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        what = "unknown value" if loc and loc[-1] != "[key]" else "unknown key"
        return document.error(loc, f"{what} {first['input']!r}", choices)
    return document.error(loc, _friendly(loc, kind, first["msg"], ctx))


_TYPE_MESSAGES = {
    "model_type": "expected a mapping of keys",
    "model_attributes_type": "expected a mapping of keys",
    "dict_type": "expected a mapping of keys",
    "list_type": "expected a list",
    "string_type": "expected text",
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "finite_number": "must be a finite number, not .inf or .nan",
    "bool_type": "expected true or false",
}


def _friendly(loc: tuple, kind: str, message: str, ctx: Mapping[str, Any]) -> str:
    if kind in _TYPE_MESSAGES:
        return _TYPE_MESSAGES[kind]
    if kind in ("too_short", "too_long") and loc and loc[-1] == "thresholds":
        return f"expected exactly 4 thresholds, got {ctx.get('actual_length')}"
    if kind == "too_short" and ctx.get("min_length") == 1:
        return "must not be empty"
    return message[0].lower() + message[1:]


def _field_names(model_class: type[BaseModel], loc: tuple) -> list[str]:
    """The field names of the model at `loc` (for 'unknown field' choices)."""
    annotation: Any = model_class
    for part in loc:
        annotation = _unwrap(annotation)
        origin = typing.get_origin(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel) and isinstance(part, str):
            field = annotation.model_fields.get(part)
            if field is None:
                return []
            annotation = field.annotation
        elif origin in (list, tuple) and isinstance(part, int):
            annotation = typing.get_args(annotation)[0]
        elif origin is dict:
            annotation = typing.get_args(annotation)[1]
        else:
            return []
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    # Strip Optional[...] and Annotated[...] to reach the model or container underneath.
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            options = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
            if len(options) != 1:
                return annotation
            annotation = options[0]
        else:
            return annotation


def load_yaml_model(path: Path, model_class: type[BaseModel], context: dict | None = None) -> Any:
    """Read a YAML file into any pydantic model with this module's errors (file, line, field).

    A model validator may raise `ConfigProblem(loc, reason, choices)` to report a cross-field
    problem on the line of `loc`.
    """
    return validate(model_class, read_document(Path(path)), context)
