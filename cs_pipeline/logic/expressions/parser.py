"""Text to tree: the tokenizer, the recursive-descent parser, the limits and the kind checks."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

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

KEYWORDS = frozenset({"and", "or", "not", "in", "between", "is", "null", "true", "false"})
COMPARISON_OPERATORS = ("==", "!=", "<=", ">=", "<", ">")


@dataclass(frozen=True)
class Limits:
    """What a condition may hold: far beyond any real rule, well below what would hang a run.

    Each is checked while the text is read, before anything recurses over the tree or reaches
    polars (a 20,000-item `in` list or a 1,500-term `and` chain makes polars' planner hang).
    """

    characters: int = 5_000  # length of the condition's text
    nodes: int = 500  # values, variables and operators in the tree
    depth: int = 32  # nesting: parentheses, `not`, unary minus, and one level per + - * / in a chain
    in_items: int = 100  # items of one `in (...)` list
    number: float = 1e15  # largest absolute value of a number, written or computed from numbers
    text: int = 200  # characters of one text literal


LIMITS = Limits()

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
    as_float = float(literal)  # never fails: an overlong literal is inf here, not an exception
    if not math.isfinite(as_float) or abs(as_float) > LIMITS.number:
        raise ExpressionError(
            f"the number {_shorten(literal)} is too large: numbers are limited to ±{LIMITS.number:g}", position + 1, text
        )
    value: object = as_float if any(c in literal for c in ".eE") else int(literal.lstrip("0") or "0")
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
    if len(value) > LIMITS.text:
        raise ExpressionError(
            f"this text is {len(value)} characters long: text values are limited to {LIMITS.text} characters",
            position + 1,
            text,
        )
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
        return self._chain("or", self.and_expr)

    def and_expr(self) -> Node:
        return self._chain("and", self.not_expr)

    def _chain(self, keyword: str, operand_rule) -> Node:
        """`a and b and c ...` read in a loop and built as a balanced tree: and/or are associative
        (in three-valued logic too), and a balanced tree of n terms is log2(n) deep, not n."""
        operands = [operand_rule()]
        columns: list[int] = []
        while self.at("keyword", keyword):
            columns.append(self.advance().column)
            operands.append(operand_rule())
        return _balanced(keyword, operands, columns)

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
            if len(items) == LIMITS.in_items:
                self.fail(f"the list after 'in' has more than {LIMITS.in_items} items (the limit)")
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
        if self.depth > LIMITS.depth:
            self.fail(f"the condition is nested too deeply (the limit is {LIMITS.depth} levels)")
        try:
            return parse_rule()
        finally:
            self.depth -= 1


def parse(text: str) -> Node:
    """Parse a condition into its tree; raise ExpressionError on anything outside the grammar."""
    if not isinstance(text, str):
        raise ExpressionError(f"a condition must be text, got {type(text).__name__}")
    if len(text) > LIMITS.characters:
        raise ExpressionError(
            f"the condition is {len(text):,} characters long (the limit is {LIMITS.characters:,})", None, text
        )
    node = _Parser(text).parse()
    _check_size(node, text)
    _check_kinds(node, text)
    _check_constants(node, text)
    return node


def _balanced(keyword: str, operands: list[Node], columns: list[int]) -> Node:
    if len(operands) == 1:
        return operands[0]
    middle = (len(operands) + 1) // 2  # three terms read ((a and b) and c), as written
    left = _balanced(keyword, operands[:middle], columns[: middle - 1])
    right = _balanced(keyword, operands[middle:], columns[middle:])
    return Logical(keyword, left, right, columns[middle - 1])


def _check_size(node: Node, text: str) -> None:
    """Node count and depth, without recursion: this runs before anything recurses over the tree."""
    count = 0
    stack = [(node, 1)]
    while stack:
        current, depth = stack.pop()
        count += 1
        if count > LIMITS.nodes:
            raise ExpressionError(
                f"the condition has more than {LIMITS.nodes} parts (values, variables and operators; the limit)",
                None,
                text,
            )
        if depth > LIMITS.depth:
            raise ExpressionError(
                f"the condition is nested too deeply: more than {LIMITS.depth} levels (the limit; "
                "each + - * / in a chain is a level)",
                current.column,
                text,
            )
        stack.extend((child, depth + 1) for child in current.children())


def _check_constants(node: Node, text: str) -> None:
    """A computation on numbers alone (`9 * 9 * 9 ...`) must stay within the number limit too."""

    def value(current: Node) -> float | None:
        # The value of a tree of numbers and + - * /, None when a variable (or a null, or a
        # division by zero, which is null) is in it. Depth is already checked: recursion is safe.
        if isinstance(current, Literal):
            return float(current.value) if isinstance(current.value, (int, float)) and not isinstance(current.value, bool) else None
        if isinstance(current, Negate):
            operand = value(current.operand)
            return None if operand is None else -operand
        if not isinstance(current, Arithmetic):
            for child in current.children():
                value(child)
            return None
        left, right = value(current.left), value(current.right)
        if left is None or right is None or (current.operator == "/" and right == 0):
            return None
        result = {"+": left + right, "-": left - right, "*": left * right}.get(current.operator) if current.operator != "/" else left / right
        if not math.isfinite(result) or abs(result) > LIMITS.number:
            raise ExpressionError(
                f"this computation on numbers gives {result:.3g}: numbers are limited to ±{LIMITS.number:g}",
                current.column,
                text,
            )
        return result

    value(node)


def _shorten(literal: str) -> str:
    return literal if len(literal) <= 20 else f"{literal[:12]}… ({len(literal)} characters)"


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


