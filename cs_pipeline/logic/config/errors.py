"""A config file's problems as one line each: the file, the line, the field, the message, the choices."""

from __future__ import annotations

import typing


class ConfigError(ValueError):
    """A problem in a config file: `str()` is "<file>:<line>: <field>: <message>[; valid choices: ...]"."""

    def __init__(
        self,
        file: str,
        line: int | None,
        field: str,
        message: str,
        choices: typing.Sequence[str] = (),
    ) -> None:
        self.file = file
        self.line = line
        self.field = field
        self.message = message
        self.choices = list(choices)
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = [self.file if self.line is None else f"{self.file}:{self.line}"]
        if self.field:
            parts.append(self.field)
        parts.append(self.message)
        text = ": ".join(parts)
        if self.choices:
            text += f"; valid choices: {', '.join(self.choices)}"
        return " ".join(text.split())  # one line, whatever the YAML or the message held


class ConfigProblem(Exception):
    """A cross-field problem found by a root model, with the path of the field it is about.

    Deliberately not a ValueError: pydantic would wrap it and lose the path. The public loaders
    turn it into a ConfigError with the line of that path.
    """

    def __init__(self, loc: tuple[str | int, ...], reason: str, choices: typing.Sequence[str] = ()) -> None:
        super().__init__(f"{field_path(loc)}: {reason}")
        self.loc = loc
        self.reason = reason
        self.choices = list(choices)


def field_path(loc: tuple) -> str:
    text = ""
    for part in loc:
        if part == "[key]":
            continue
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
