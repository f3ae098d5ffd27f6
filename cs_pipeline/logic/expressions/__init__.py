"""The rule condition language: a small, safe expression language compiled to polars.

A rule's condition is user-written text in a YAML file, so it is parsed here by a hand-written
tokenizer and recursive-descent parser into a small tree, and that tree is turned into a
`polars.Expr`. Nothing is ever handed to Python's `eval`, to `ast`, or glued into SQL text: the
only things a condition can do are the ones this module builds.

    condition   := or_expr
    or_expr     := and_expr ("or" and_expr)*
    and_expr    := not_expr ("and" not_expr)*
    not_expr    := "not" not_expr | predicate
    predicate   := additive [ ("==" | "!=" | "<" | "<=" | ">" | ">=") additive
                            | ["not"] "in" "(" additive ("," additive)* ")"
                            | ["not"] "between" additive "and" additive
                            | "is" ["not"] "null" ]
    additive    := multiplicative (("+" | "-") multiplicative)*
    multiplicative := unary (("*" | "/") unary)*
    unary       := "-" unary | primary
    primary     := number | string | "true" | "false" | "null" | variable | "(" or_expr ")"

Limits (`LIMITS`, checked when a rule is loaded, before anything is compiled): the length of the
text, the number of nodes and the depth of the tree, the items of an `in` list, the size of a
number or a text literal and of a constant computed from literals. Arithmetic is compiled in
floating point, so a figure never wraps around silently.

The package is cut by subject: `parser` (text to tree, limits, kind checks), `compiler` (tree to
polars), `explain` (variables, words, one row's value, `not` pushed down); `tree` holds the nodes.

Nulls follow SQL: a comparison or arithmetic with a null operand is null, and the compiled
condition turns a null result into false, so a rule never fires on a figure it does not have.
Division by zero is null for the same reason.
"""

from __future__ import annotations

from cs_pipeline.logic.expressions.compiler import compile_condition
from cs_pipeline.logic.expressions.explain import boolean_variables, describe, evaluate, variables, without_not
from cs_pipeline.logic.expressions.parser import LIMITS, parse
from cs_pipeline.logic.expressions.tree import (
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

__all__ = [
    "ExpressionError",
    "LIMITS",
    "Node",
    "Literal",
    "Variable",
    "Negate",
    "Arithmetic",
    "Comparison",
    "Logical",
    "Not",
    "InList",
    "Between",
    "IsNull",
    "parse",
    "variables",
    "boolean_variables",
    "compile_condition",
    "describe",
    "evaluate",
    "without_not",
]
