"""Reading a YAML config file: the line of every key, and the limits of every config file
(size, no aliases or anchors, nesting depth)."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import yaml

from cs_pipeline.logic.config.errors import ConfigError, field_path

# Limits of every YAML config file (health model, rules, sources, task sinks, write-back): far above
# any real file, far below what would exhaust memory or Python's recursion.
MAX_CONFIG_BYTES = 1_000_000
MAX_YAML_DEPTH = 32


class Document:
    """A parsed YAML file: its data and the line of each key / list item, by path."""

    def __init__(self, file: str, data: Any, lines: dict[tuple, int]) -> None:
        self.file = file
        self.data = data
        self.lines = lines

    def line_of(self, loc: tuple) -> int | None:
        # The closest enclosing item that has a line: a missing field is reported on its parent.
        path = tuple(part for part in loc if part != "[key]")
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())

    def error(self, loc: tuple, message: str, choices: typing.Sequence[str] = ()) -> ConfigError:
        return ConfigError(self.file, self.line_of(loc), field_path(loc), message, choices)


class _Refused(yaml.MarkedYAMLError):
    """Valid YAML that a config file may not use (an alias, an anchor, too deep a nesting)."""


class _ConfigLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader, refusing aliases and anchors and nesting past MAX_YAML_DEPTH.

    An alias is a reference: nine nested lists of nine aliases each (a 1 KB "billion laughs")
    expand to 9**9 values when constructed or validated. Config files are short and written by
    hand, so they have no use for references; the refusal comes while the file is composed,
    before anything is expanded. The composer recurses once per level, hence the depth limit.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):  # noqa: ANN001 - PyYAML's signature
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise _Refused(None, None, f"YAML aliases (*{event.anchor}) are not allowed in config files: write the value out", event.start_mark)
        if getattr(event, "anchor", None) is not None:
            raise _Refused(None, None, f"YAML anchors (&{event.anchor}) are not allowed in config files: write the value out", event.start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise _Refused(None, None, f"nested more than {MAX_YAML_DEPTH} levels deep (the limit)", event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _read_text(path: Path) -> str:
    file = str(path)
    try:
        size = Path(path).stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(file, None, "", f"the file is {size:,} bytes; config files are limited to {MAX_CONFIG_BYTES:,} bytes")
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(file, None, "", "file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(file, None, "", f"cannot read the file: {error}") from None


def _yaml_error(file: str, error: yaml.YAMLError) -> ConfigError:
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark else None
        prefix = "" if isinstance(error, _Refused) else "invalid YAML: "
        return ConfigError(file, line, "", f"{prefix}{error.problem or error}")
    return ConfigError(file, None, "", f"invalid YAML: {error}")


def read_yaml(path: Path) -> Any:
    """A YAML config file's data (None when it is empty), read with the limits of every config
    file: size, no aliases or anchors, nesting depth. Problems are ConfigErrors naming the line."""
    file = str(path)
    loader = _ConfigLoader(_read_text(Path(path)))
    try:
        return loader.get_single_data()
    except yaml.YAMLError as error:
        raise _yaml_error(file, error) from None
    finally:
        loader.dispose()


def read_document(path: Path) -> Document:
    file = str(path)
    loader = _ConfigLoader(_read_text(Path(path)))
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError(file, 1, "", "the file is empty")
        lines: dict[tuple, int] = {}
        _record_lines(loader, node, (), lines, file)
        data = loader.construct_document(node)
    except yaml.YAMLError as error:
        raise _yaml_error(file, error) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise ConfigError(file, node.start_mark.line + 1, "", "expected a mapping of keys at the top of the file")
    return Document(file, data, lines)


def _record_lines(
    loader: yaml.SafeLoader, node: yaml.Node, path: tuple, lines: dict[tuple, int], file: str
) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = loader.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(file, line, field_path((*path, key)), f"duplicate key (first on line {seen[key]})")
            seen[key] = line
            lines[(*path, key)] = line
            _record_lines(loader, value_node, (*path, key), lines, file)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _record_lines(loader, item, (*path, index), lines, file)
