"""Tree to `polars.Expr`: what decides whether a rule fires."""

from __future__ import annotations

import difflib
from collections.abc import Collection

import polars as pl

from cs_pipeline.logic.expressions.parser import parse
from cs_pipeline.logic.expressions.tree import (
    COMPARE,
    Arithmetic,
    Between,
    Comparison,
    ExpressionError,
    InList,
    IsNull,
    Literal,
    Logical,
    Negate,
    Node,
    Not,
    Variable,
)


def _check_known(node: Node, known: Collection[str], text: str) -> None:
    known = set(known)
    valid = sorted(known)
    for current in node.walk():
        if isinstance(current, Variable) and current.name not in known:
            close = difflib.get_close_matches(current.name, valid, n=1)
            reason = f"unknown variable '{current.name}'"
            if close:
                reason += f"; did you mean '{close[0]}'?"
            separator = " " if close else "; "
            message = f"{reason}{separator}valid variables: {', '.join(valid)}"
            raise ExpressionError(message, current.column, text, reason=reason, choices=valid)


# ---------------------------------------------------------------------------------------------
# Compilation to polars


def compile_condition(text: str, known: Collection[str]) -> pl.Expr:
    """Compile a condition to a boolean `polars.Expr` usable in `DataFrame.filter`.

    Every variable must be in `known` (the columns of account_health). A null result, from a
    comparison with a missing figure, is false: rules fire only on figures that exist.
    """
    node = parse(text)
    _check_known(node, known, text)
    return _compile(node).fill_null(False)


def _compile(node: Node) -> pl.Expr:
    if isinstance(node, Literal):
        return pl.lit(node.value)
    if isinstance(node, Variable):
        return pl.col(node.name)
    if isinstance(node, Negate):
        return -_number(_compile(node.operand))
    if isinstance(node, Arithmetic):
        return _compile_arithmetic(node)
    if isinstance(node, Comparison):
        return COMPARE[node.operator](_compile(node.left), _compile(node.right))
    if isinstance(node, Logical):
        # One flat all/any over every term of a chain: polars plans a deep tree of & or | in
        # super-linear time. Both follow SQL's three-valued logic (null and false = false,
        # null or true = true), as & and | do.
        terms = [_compile(term) for term in _terms(node)]
        return pl.all_horizontal(terms) if node.operator == "and" else pl.any_horizontal(terms)
    if isinstance(node, Not):
        return ~_compile(node.operand)
    if isinstance(node, InList):
        matched = _in_list(_compile(node.operand), node.items)
        return ~matched if node.negated else matched
    if isinstance(node, Between):
        operand = _compile(node.operand)
        inside = (operand >= _compile(node.low)) & (operand <= _compile(node.high))
        return ~inside if node.negated else inside
    if isinstance(node, IsNull):
        operand = _compile(node.operand)
        return operand.is_not_null() if node.negated else operand.is_null()
    raise TypeError(f"unknown node {node!r}")


def _terms(node: Logical) -> list[Node]:
    """The operands of a chain of one operator, in order: `a and (b and c)` -> [a, b, c]."""
    terms: list[Node] = []
    stack: list[Node] = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, Logical) and current.operator == node.operator:
            stack.extend((current.right, current.left))
        else:
            terms.append(current)
    return terms


def _in_list(operand: pl.Expr, items: tuple[Node, ...]) -> pl.Expr:
    """`is_in` over a list of numbers or of texts; otherwise one flat `any` of equalities.

    A null operand gives null either way, as in every other comparison. Numbers are compared as
    floats: polars' `is_in` wants both sides of one type, and a column may be any integer type.
    """
    values = [item.value for item in items if isinstance(item, Literal)]
    if len(values) == len(items):
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            numbers = pl.Series([float(v) for v in values], dtype=pl.Float64)
            return operand.cast(pl.Float64).is_in(pl.lit(numbers).implode())
        if all(isinstance(v, str) for v in values):
            return operand.is_in(pl.lit(pl.Series(values, dtype=pl.String)).implode())
    equalities = [operand == _compile(item) for item in items]
    return equalities[0] if len(equalities) == 1 else pl.any_horizontal(equalities)


def _number(expression: pl.Expr) -> pl.Expr:
    # Arithmetic in floating point: integers would wrap around silently past 2**63 (polars even
    # computes integer literals in 32 bits), a float only loses digits past 2**53.
    return expression.cast(pl.Float64)


def _compile_arithmetic(node: Arithmetic) -> pl.Expr:
    left, right = _number(_compile(node.left)), _number(_compile(node.right))
    if node.operator == "+":
        return left + right
    if node.operator == "-":
        return left - right
    if node.operator == "*":
        return left * right
    # x / 0 is null rather than infinity: a rate over nothing is not a figure a rule can judge.
    return pl.when(right == 0).then(None).otherwise(left / right)


