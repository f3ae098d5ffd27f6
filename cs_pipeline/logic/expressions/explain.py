"""Questions about a condition: its variables, its words, its value on one row, its `not`s pushed down."""

from __future__ import annotations

import operator
from collections.abc import Mapping

from cs_pipeline.logic.expressions.parser import parse
from cs_pipeline.logic.expressions.tree import (
    COMPARE,
    Arithmetic,
    Between,
    Comparison,
    InList,
    IsNull,
    Literal,
    Logical,
    Negate,
    Node,
    Not,
    Variable,
)

# ---------------------------------------------------------------------------------------------
# Queries on a condition


def _as_node(node_or_text: Node | str) -> Node:
    return parse(node_or_text) if isinstance(node_or_text, str) else node_or_text


def variables(node_or_text: Node | str) -> set[str]:
    """The variable names a condition uses."""
    return {node.name for node in _as_node(node_or_text).walk() if isinstance(node, Variable)}


def boolean_variables(node_or_text: Node | str) -> set[str]:
    """Variables used directly as a condition (`... and all_key_features_used_30d`).

    Such a variable must hold true/false; the config loader checks that against the column types.
    """
    node = _as_node(node_or_text)
    positions = [node]
    for current in node.walk():
        if isinstance(current, (Logical, Not)):
            positions.extend(current.children())
    return {position.name for position in positions if isinstance(position, Variable)}


# ---------------------------------------------------------------------------------------------
# Words, for messages: "days since last login is at least 20"

_COMPARISON_WORDS = {
    "==": "is",
    "!=": "is not",
    "<": "is below",
    "<=": "is at most",
    ">": "is above",
    ">=": "is at least",
}
_ARITHMETIC_WORDS = {"+": "plus", "-": "minus", "*": "times", "/": "divided by"}


def describe(node_or_text: Node | str) -> str:
    """The condition in words, e.g. "days since last login is at least 20" (best effort)."""
    return _words(_as_node(node_or_text))


def _words(node: Node) -> str:
    if isinstance(node, Literal):
        return str(node)
    if isinstance(node, Variable):
        return node.name.replace("_", " ")
    if isinstance(node, Negate):
        if isinstance(node.operand, Literal):
            return f"-{node.operand}"
        return f"minus {_words(node.operand)}"
    if isinstance(node, Arithmetic):
        return f"{_words(node.left)} {_ARITHMETIC_WORDS[node.operator]} {_words(node.right)}"
    if isinstance(node, Comparison):
        return f"{_words(node.left)} {_COMPARISON_WORDS[node.operator]} {_words(node.right)}"
    if isinstance(node, Logical):
        return f"{_logical_part(node.left, node.operator)} {node.operator} {_logical_part(node.right, node.operator)}"
    if isinstance(node, Not):
        inner = _words(node.operand)
        return f"not {inner}" if isinstance(node.operand, (Variable, Literal)) else f"not ({inner})"
    if isinstance(node, InList):
        items = [_words(item) for item in node.items]
        subject = _words(node.operand)
        if len(items) == 1:
            return f"{subject} is {'not ' if node.negated else ''}{items[0]}"
        listed = f"{', '.join(items[:-1])} or {items[-1]}"
        return f"{subject} is {'none' if node.negated else 'one'} of {listed}"
    if isinstance(node, Between):
        keyword = "is not between" if node.negated else "is between"
        return f"{_words(node.operand)} {keyword} {_words(node.low)} and {_words(node.high)}"
    if isinstance(node, IsNull):
        return f"{_words(node.operand)} is {'known' if node.negated else 'unknown'}"
    return str(node)


def _logical_part(node: Node, parent_operator: str) -> str:
    # "a or b" inside an "and" needs parentheses in words too, or the sentence changes meaning.
    words = _words(node)
    if isinstance(node, Logical) and node.operator != parent_operator:
        return f"({words})"
    return words


# ---------------------------------------------------------------------------------------------
# One row in plain Python, for explaining an alert ("days since last login: 27, threshold ≥ 20").
# `compile_condition` is what decides whether a rule fires; these say why it did.


def evaluate(node_or_text: Node | str, values: Mapping[str, object]) -> object:
    """The value of a condition, or of any part of it, on one row of plain values.

    The rules are the compiled condition's: a null operand gives null, `and`/`or` follow SQL's
    three-valued logic, x / 0 is null. A variable missing from `values` is null, and so is an
    operation the values do not support (text compared with a number).
    """
    node = _as_node(node_or_text)
    try:
        return _evaluate(node, values)
    except (TypeError, ValueError, ArithmeticError):
        return None


def _evaluate(node: Node, values: Mapping[str, object]) -> object:
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Variable):
        return values.get(node.name)
    if isinstance(node, Logical):
        left, right = _truth(evaluate(node.left, values)), _truth(evaluate(node.right, values))
        decisive = node.operator == "or"  # true decides an `or`, false decides an `and`
        if decisive in (left, right):
            return decisive
        return None if None in (left, right) else not decisive
    if isinstance(node, Not):
        operand = _truth(evaluate(node.operand, values))
        return None if operand is None else not operand
    if isinstance(node, InList):
        matches = [_truth(evaluate(Comparison("==", node.operand, item, node.column), values)) for item in node.items]
        found = True if True in matches else None if None in matches else False
        return None if found is None else found != node.negated
    if isinstance(node, Between):
        inside = Logical(
            "and", Comparison(">=", node.operand, node.low, node.column), Comparison("<=", node.operand, node.high, node.column),
            node.column,
        )
        result = _truth(evaluate(inside, values))
        return None if result is None else result != node.negated
    if isinstance(node, IsNull):
        return (evaluate(node.operand, values) is None) != node.negated
    operands = [evaluate(child, values) for child in node.children()]
    if any(operand is None for operand in operands):
        return None
    if isinstance(node, Negate):
        return -operands[0]
    if isinstance(node, Comparison):
        return COMPARE[node.operator](*operands)
    if isinstance(node, Arithmetic):
        left, right = operands
        if node.operator == "/":
            return None if right == 0 else left / right
        return {"+": operator.add, "-": operator.sub, "*": operator.mul}[node.operator](left, right)
    raise TypeError(f"unknown node {node!r}")


def _truth(value: object) -> bool | None:
    return None if value is None else bool(value)


_NEGATED_COMPARISON = {"==": "!=", "!=": "==", "<": ">=", "<=": ">", ">": "<=", ">=": "<"}


def without_not(node_or_text: Node | str) -> Node:
    """The same condition with every `not` pushed down into what it negates, so that each part
    joined by and/or reads on its own: `not (a > 1 or b in (2, 3))` is `a <= 1 and b not in (2, 3)`.

    Equivalent under three-valued logic too (not null is null, and so is the inverted comparison);
    a `not` in front of a variable or of anything else stays where it is.
    """
    return _push_not(_as_node(node_or_text), negate=False)


def _push_not(node: Node, negate: bool) -> Node:
    if isinstance(node, Not):
        return _push_not(node.operand, not negate)
    if isinstance(node, Logical):
        operator_ = {"and": "or", "or": "and"}[node.operator] if negate else node.operator
        return Logical(operator_, _push_not(node.left, negate), _push_not(node.right, negate), node.column)
    if not negate:
        return node
    if isinstance(node, Comparison):
        return Comparison(_NEGATED_COMPARISON[node.operator], node.left, node.right, node.column)
    if isinstance(node, InList):
        return InList(node.operand, node.items, not node.negated, node.column)
    if isinstance(node, Between):
        return Between(node.operand, node.low, node.high, not node.negated, node.column)
    if isinstance(node, IsNull):
        return IsNull(node.operand, not node.negated, node.column)
    if isinstance(node, Literal) and isinstance(node.value, bool):
        return Literal(not node.value, node.column)
    return Not(node, node.column)
