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

Nulls follow SQL: a comparison or arithmetic with a null operand is null, and the compiled
condition turns a null result into false, so a rule never fires on a figure it does not have.
Division by zero is null for the same reason.
"""

from __future__ import annotations

import difflib
import operator
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass

import polars as pl

__all__ = [
    "ExpressionError",
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

KEYWORDS = frozenset({"and", "or", "not", "in", "between", "is", "null", "true", "false"})
COMPARISON_OPERATORS = ("==", "!=", "<=", ">=", "<", ">")
_MAX_DEPTH = 64  # deeper nesting than any real rule; stops a hostile input hitting Python's recursion limit


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
# Tokens


@dataclass(frozen=True)
class Token:
    kind: str  # "number", "string", "name", "keyword", "op", "end"
    value: object
    column: int  # 1-based
    text: str  # as written, for messages


# Characters people reach for from Python, SQL or shells, with the reason each is refused.
_REFUSED_CHARACTERS = {
    ".": "'.' is not allowed: there is no attribute access; variables are plain names",
    ";": "';' is not allowed: a condition is a single expression",
    "[": "brackets are not allowed: there are no lists or indexing; use 'in (a, b)'",
    "]": "brackets are not allowed: there are no lists or indexing; use 'in (a, b)'",
    "{": "braces are not allowed",
    "}": "braces are not allowed",
    "`": "backticks are not allowed: variables are written as plain names",
    "&": "'&' is not allowed: use 'and'",
    "|": "'|' is not allowed: use 'or'",
    "!": "'!' is not allowed: use 'not', or '!=' to compare",
    "%": "'%' is not allowed: only + - * / are supported",
    ":": "':' is not allowed",
    "#": "'#' is not allowed: conditions have no comments",
    "\\": "'\\' is not allowed",
    "@": "'@' is not allowed",
    "$": "'$' is not allowed",
    "?": "'?' is not allowed",
    "^": "'^' is not allowed",
    "~": "'~' is not allowed: use 'not'",
}

_NUMBER = re.compile(r"\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_VALID_NAME = re.compile(r"[a-z_][a-z0-9_]*")


def _tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        char = text[position]
        column = position + 1
        if char.isspace():
            position += 1
        elif char.isdigit():
            position = _read_number(text, position, tokens)
        elif char in "'\"":
            position = _read_string(text, position, tokens)
        elif char.isalpha() or char == "_":
            position = _read_word(text, position, tokens)
        else:
            two = text[position : position + 2]
            if two == "--":
                raise ExpressionError("'--' is not allowed: conditions have no comments", column, text)
            if two == "<>":
                raise ExpressionError("'<>' is not an operator: use '!='", column, text)
            if two in ("==", "!=", "<=", ">="):
                tokens.append(Token("op", two, column, two))
                position += 2
            elif two in ("&&", "||", "**", "//"):
                raise ExpressionError(f"'{two}' is not an operator{_spelling_hint(two)}", column, text)
            elif char == "=":
                raise ExpressionError("'=' alone is not an operator: use '==' to compare", column, text)
            elif char in "<>+-*/(),":
                tokens.append(Token("op", char, column, char))
                position += 1
            elif char in _REFUSED_CHARACTERS:
                raise ExpressionError(_REFUSED_CHARACTERS[char], column, text)
            else:
                raise ExpressionError(f"unexpected character {char!r}", column, text)
    tokens.append(Token("end", None, len(text) + 1, "end of condition"))
    return tokens


def _spelling_hint(symbol: str) -> str:
    return {"&&": ": use 'and'", "||": ": use 'or'"}.get(symbol, "")


def _read_number(text: str, position: int, tokens: list[Token]) -> int:
    match = _NUMBER.match(text, position)
    assert match is not None  # called on a digit
    end = match.end()
    if end < len(text) and (text[end].isalnum() or text[end] in "._"):
        raise ExpressionError(f"malformed number {text[position:end + 1]!r}", position + 1, text)
    literal = match.group()
    value: object = float(literal) if any(c in literal for c in ".eE") else int(literal)
    tokens.append(Token("number", value, position + 1, literal))
    return end


def _read_string(text: str, position: int, tokens: list[Token]) -> int:
    # No escapes: a string ends at the next quote of the same kind. To put a ' inside a string,
    # quote it with " (and the other way round). This keeps what a reader sees exactly the value.
    quote = text[position]
    end = text.find(quote, position + 1)
    if end == -1:
        raise ExpressionError(f"string starting here is never closed with {quote}", position + 1, text)
    value = text[position + 1 : end]
    tokens.append(Token("string", value, position + 1, text[position : end + 1]))
    return end + 1


def _read_word(text: str, position: int, tokens: list[Token]) -> int:
    match = _WORD.match(text, position)
    assert match is not None  # called on a letter or underscore
    word = match.group()
    column = position + 1
    if "__" in word:
        raise ExpressionError(f"{word!r}: names with '__' are not allowed", column, text)
    if not _VALID_NAME.fullmatch(word):
        lowered = word.lower()
        hint = f"write '{lowered}'" if lowered in KEYWORDS else "variables are lowercase"
        raise ExpressionError(f"{word!r}: names and keywords are lowercase; {hint}", column, text)
    kind = "keyword" if word in KEYWORDS else "name"
    tokens.append(Token(kind, word, column, word))
    return match.end()


# ---------------------------------------------------------------------------------------------
# The tree. Each node keeps the column where it starts, for messages about it.


class Node:
    column: int

    def children(self) -> tuple[Node, ...]:
        return ()

    def walk(self) -> Iterator[Node]:
        yield self
        for child in self.children():
            yield from child.walk()


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


# ---------------------------------------------------------------------------------------------
# Parser


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.index = 0
        self.depth = 0

    # -- token helpers

    @property
    def current(self) -> Token:
        return self.tokens[self.index]

    def peek(self, offset: int = 1) -> Token:
        return self.tokens[min(self.index + offset, len(self.tokens) - 1)]

    def at(self, kind: str, *values: object) -> bool:
        token = self.current
        return token.kind == kind and (not values or token.value in values)

    def advance(self) -> Token:
        token = self.current
        self.index += 1
        return token

    def expect(self, kind: str, value: object, what: str) -> Token:
        if not self.at(kind, value):
            self.fail(f"expected {what}, found {self._describe(self.current)}")
        return self.advance()

    def fail(self, message: str, token: Token | None = None) -> None:
        token = token or self.current
        raise ExpressionError(message, token.column, self.text)

    @staticmethod
    def _describe(token: Token) -> str:
        return token.text if token.kind == "end" else repr(token.text)

    # -- grammar

    def parse(self) -> Node:
        if self.at("end"):
            raise ExpressionError("the condition is empty", None, self.text)
        node = self.or_expr()
        if not self.at("end"):
            self.fail(f"unexpected {self._describe(self.current)} after a complete condition")
        return node

    def or_expr(self) -> Node:
        node = self.and_expr()
        while self.at("keyword", "or"):
            token = self.advance()
            node = Logical("or", node, self.and_expr(), token.column)
        return node

    def and_expr(self) -> Node:
        node = self.not_expr()
        while self.at("keyword", "and"):
            token = self.advance()
            node = Logical("and", node, self.not_expr(), token.column)
        return node

    def not_expr(self) -> Node:
        if self.at("keyword", "not"):
            token = self.advance()
            return Not(self._nested(self.not_expr), token.column)
        return self.predicate()

    def predicate(self) -> Node:
        left = self.additive()
        token = self.current
        if self.at("op", *COMPARISON_OPERATORS):
            self.advance()
            node: Node = Comparison(str(token.value), left, self.additive(), token.column)
            if self.at("op", *COMPARISON_OPERATORS):
                self.fail("comparisons cannot be chained: join them with 'and'")
            return node
        negated = False
        if self.at("keyword", "not") and self.peek().kind == "keyword" and self.peek().value in ("in", "between"):
            self.advance()
            negated = True
        elif self.at("keyword", "not"):
            self.fail("expected 'in' or 'between' after 'not' (or write 'not' before the whole comparison)")
        if self.at("keyword", "in"):
            self.advance()
            return InList(left, self.value_list(), negated, token.column)
        if self.at("keyword", "between"):
            self.advance()
            low = self.additive()
            self.expect("keyword", "and", "'and' between the two bounds of 'between'")
            return Between(left, low, self.additive(), negated, token.column)
        if self.at("keyword", "is"):
            self.advance()
            is_not = bool(self.at("keyword", "not") and self.advance())
            self.expect("keyword", "null", "'null' after 'is' (only 'is null' and 'is not null' exist)")
            return IsNull(left, is_not, token.column)
        return left

    def value_list(self) -> tuple[Node, ...]:
        self.expect("op", "(", "'(' to open the list after 'in'")
        if self.at("op", ")"):
            self.fail("the list after 'in' is empty")
        items = [self.additive()]
        while self.at("op", ","):
            self.advance()
            items.append(self.additive())
        self.expect("op", ")", "',' or ')' in the list after 'in'")
        return tuple(items)

    def additive(self) -> Node:
        node = self.multiplicative()
        while self.at("op", "+", "-"):
            token = self.advance()
            node = Arithmetic(str(token.value), node, self.multiplicative(), token.column)
        return node

    def multiplicative(self) -> Node:
        node = self.unary()
        while self.at("op", "*", "/"):
            token = self.advance()
            node = Arithmetic(str(token.value), node, self.unary(), token.column)
        return node

    def unary(self) -> Node:
        if self.at("op", "-"):
            token = self.advance()
            return Negate(self._nested(self.unary), token.column)
        return self.primary()

    def primary(self) -> Node:
        token = self.current
        if token.kind in ("number", "string"):
            self.advance()
            return Literal(token.value, token.column)
        if token.kind == "keyword" and token.value in ("true", "false", "null"):
            self.advance()
            return Literal({"true": True, "false": False, "null": None}[str(token.value)], token.column)
        if token.kind == "name":
            self.advance()
            if self.at("op", "("):
                self.fail(f"function calls are not allowed: {token.value!r} is not a function", token)
            return Variable(str(token.value), token.column)
        if self.at("op", "("):
            self.advance()
            node = self._nested(self.or_expr)
            self.expect("op", ")", "')' to close the parenthesis")
            return node
        if token.kind == "end":
            self.fail("the condition ends too early: expected a value or a variable")
        self.fail(f"expected a value or a variable, found {self._describe(token)}")
        raise AssertionError("unreachable")

    def _nested(self, parse_rule) -> Node:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            self.fail("the condition is nested too deeply")
        try:
            return parse_rule()
        finally:
            self.depth -= 1


def parse(text: str) -> Node:
    """Parse a condition into its tree; raise ExpressionError on anything outside the grammar."""
    if not isinstance(text, str):
        raise ExpressionError(f"a condition must be text, got {type(text).__name__}")
    node = _Parser(text).parse()
    _check_kinds(node, text)
    return node


# ---------------------------------------------------------------------------------------------
# Kind checks: catch `score and 1` or `(a > 1) + 2` when the rule is loaded, not when it runs.
# A variable's type is unknown here, so variables (and null) pass everywhere.

_BOOLEAN, _VALUE, _ANY = "boolean", "value", "any"


def _kind(node: Node) -> str:
    if isinstance(node, (Comparison, Logical, Not, InList, Between, IsNull)):
        return _BOOLEAN
    if isinstance(node, Literal):
        if isinstance(node.value, bool):
            return _BOOLEAN
        return _ANY if node.value is None else _VALUE
    if isinstance(node, (Arithmetic, Negate)):
        return _VALUE
    return _ANY


def _check_kinds(node: Node, text: str) -> None:
    for current in node.walk():
        if isinstance(current, (Logical, Not)):
            operands = current.children()
            for operand in operands:
                if _kind(operand) == _VALUE:
                    raise ExpressionError(
                        f"'{_keyword(current)}' needs conditions on both sides, not the value {operand}",
                        operand.column,
                        text,
                    )
        elif isinstance(current, (Arithmetic, Negate)):
            for operand in current.children():
                if _kind(operand) == _BOOLEAN:
                    raise ExpressionError("arithmetic on a condition: compare values first", operand.column, text)
                if isinstance(operand, Literal) and isinstance(operand.value, str):
                    raise ExpressionError("arithmetic on text is not possible", operand.column, text)
        elif isinstance(current, Comparison):
            _check_comparison(current, text)
        elif isinstance(current, (InList, Between)):
            for operand in current.children():
                if isinstance(operand, Literal) and operand.value is None:
                    raise ExpressionError(
                        "null never matches a value: use 'is null' or 'is not null'", operand.column, text
                    )
    if _kind(node) == _VALUE:
        raise ExpressionError("a condition must be true or false, for example 'score < 1.5'", node.column, text)


def _check_comparison(node: Comparison, text: str) -> None:
    for operand in (node.left, node.right):
        if isinstance(operand, Literal) and operand.value is None:
            hint = "is null" if node.operator == "==" else "is not null"
            raise ExpressionError(f"comparing with null is never true: use '{hint}'", operand.column, text)
        if node.operator not in ("==", "!=") and _kind(operand) == _BOOLEAN:
            raise ExpressionError(f"'{node.operator}' cannot order conditions", operand.column, text)


def _keyword(node: Node) -> str:
    return node.operator if isinstance(node, Logical) else "not"


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
        return -_compile(node.operand)
    if isinstance(node, Arithmetic):
        return _compile_arithmetic(node)
    if isinstance(node, Comparison):
        return _COMPARE[node.operator](_compile(node.left), _compile(node.right))
    if isinstance(node, Logical):
        left, right = _compile(node.left), _compile(node.right)
        # polars' & and | follow SQL's three-valued logic: null and false = false, null or true = true.
        return left & right if node.operator == "and" else left | right
    if isinstance(node, Not):
        return ~_compile(node.operand)
    if isinstance(node, InList):
        # A chain of equalities rather than `is_in`, so nulls behave as in every other comparison.
        operand = _compile(node.operand)
        matched = _or_all([operand == _compile(item) for item in node.items])
        return ~matched if node.negated else matched
    if isinstance(node, Between):
        operand = _compile(node.operand)
        inside = (operand >= _compile(node.low)) & (operand <= _compile(node.high))
        return ~inside if node.negated else inside
    if isinstance(node, IsNull):
        operand = _compile(node.operand)
        return operand.is_not_null() if node.negated else operand.is_null()
    raise TypeError(f"unknown node {node!r}")


def _or_all(expressions: list[pl.Expr]) -> pl.Expr:
    result = expressions[0]
    for expression in expressions[1:]:
        result = result | expression
    return result


def _compile_arithmetic(node: Arithmetic) -> pl.Expr:
    left, right = _compile(node.left), _compile(node.right)
    if node.operator == "+":
        return left + right
    if node.operator == "-":
        return left - right
    if node.operator == "*":
        return left * right
    # x / 0 is null rather than infinity: a rate over nothing is not a figure a rule can judge.
    return pl.when(right == 0).then(None).otherwise(left / right)


_COMPARE = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


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
        found = _truth(evaluate(_or_chain(node), values))
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
        return _COMPARE[node.operator](*operands)
    if isinstance(node, Arithmetic):
        left, right = operands
        if node.operator == "/":
            return None if right == 0 else left / right
        return {"+": operator.add, "-": operator.sub, "*": operator.mul}[node.operator](left, right)
    raise TypeError(f"unknown node {node!r}")


def _truth(value: object) -> bool | None:
    return None if value is None else bool(value)


def _or_chain(node: InList) -> Node:
    result: Node = Comparison("==", node.operand, node.items[0], node.column)
    for item in node.items[1:]:
        result = Logical("or", result, Comparison("==", node.operand, item, node.column), node.column)
    return result


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
