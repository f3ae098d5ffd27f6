"""The tree of a parsed condition, and the error every part of the language raises."""

from __future__ import annotations

import operator
from collections.abc import Collection, Iterator
from dataclasses import dataclass


class ExpressionError(ValueError):
    """A condition that cannot be parsed or compiled.

    `message` says what is wrong, `column` where (1-based, None when it is about the whole text).
    `reason` is the message without a list of valid variables, and `choices` that list, so the
    config loader can print both in its own one-line format. `str()` adds a caret excerpt.
    """

    def __init__(
        self,
        message: str,
        column: int | None = None,
        text: str | None = None,
        *,
        reason: str | None = None,
        choices: Collection[str] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.column = column
        self.text = text
        self.reason = reason or message
        self.choices = list(choices)

    @property
    def excerpt(self) -> str:
        """The offending line with a caret under the column ('' when there is no position)."""
        if self.text is None or self.column is None:
            return ""
        offset = self.column - 1
        line_start = self.text.rfind("\n", 0, offset) + 1
        line_end = self.text.find("\n", offset)
        line = self.text[line_start : line_end if line_end != -1 else len(self.text)]
        return f"{line}\n{' ' * (offset - line_start)}^"

    def __str__(self) -> str:
        where = f" (column {self.column})" if self.column is not None else ""
        excerpt = self.excerpt
        return f"{self.message}{where}\n{excerpt}" if excerpt else f"{self.message}{where}"


# ---------------------------------------------------------------------------------------------
# The tree. Each node keeps the column where it starts, for messages about it.


class Node:
    column: int

    def children(self) -> tuple[Node, ...]:
        return ()

    def walk(self) -> Iterator[Node]:
        """This node and every node under it, parents first (without recursion: any depth is safe)."""
        stack: list[Node] = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children()))


@dataclass(frozen=True)
class Literal(Node):
    value: object  # int, float, str, bool or None
    column: int

    def __str__(self) -> str:
        if self.value is None:
            return "null"
        if isinstance(self.value, bool):
            return "true" if self.value else "false"
        if isinstance(self.value, str):
            quote = '"' if "'" in self.value else "'"
            return f"{quote}{self.value}{quote}"
        return repr(self.value)


@dataclass(frozen=True)
class Variable(Node):
    name: str
    column: int

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Negate(Node):
    operand: Node
    column: int

    def children(self) -> tuple[Node, ...]:
        return (self.operand,)

    def __str__(self) -> str:
        return f"(-{self.operand})"


@dataclass(frozen=True)
class Binary(Node):
    """An operator between two operands; the subclasses say which family it belongs to."""

    operator: str
    left: Node
    right: Node
    column: int

    def children(self) -> tuple[Node, ...]:
        return (self.left, self.right)

    def __str__(self) -> str:
        return f"({self.left} {self.operator} {self.right})"


class Arithmetic(Binary):
    """+ - * /"""


class Comparison(Binary):
    """== != < <= > >="""


class Logical(Binary):
    """and, or"""


@dataclass(frozen=True)
class Not(Node):
    operand: Node
    column: int

    def children(self) -> tuple[Node, ...]:
        return (self.operand,)

    def __str__(self) -> str:
        return f"(not {self.operand})"


@dataclass(frozen=True)
class InList(Node):
    operand: Node
    items: tuple[Node, ...]
    negated: bool
    column: int

    def children(self) -> tuple[Node, ...]:
        return (self.operand, *self.items)

    def __str__(self) -> str:
        keyword = "not in" if self.negated else "in"
        return f"({self.operand} {keyword} ({', '.join(str(item) for item in self.items)}))"


@dataclass(frozen=True)
class Between(Node):
    operand: Node
    low: Node
    high: Node
    negated: bool
    column: int

    def children(self) -> tuple[Node, ...]:
        return (self.operand, self.low, self.high)

    def __str__(self) -> str:
        keyword = "not between" if self.negated else "between"
        return f"({self.operand} {keyword} {self.low} and {self.high})"


@dataclass(frozen=True)
class IsNull(Node):
    operand: Node
    negated: bool
    column: int

    def children(self) -> tuple[Node, ...]:
        return (self.operand,)

    def __str__(self) -> str:
        return f"({self.operand} is {'not ' if self.negated else ''}null)"



COMPARE = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}

