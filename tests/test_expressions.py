"""The rule condition language: grammar, refusals, null semantics and messages."""

from __future__ import annotations

import polars as pl
import pytest

from cs_pipeline.logic.expressions import (
    ExpressionError,
    boolean_variables,
    compile_condition,
    describe,
    parse,
    variables,
)

KNOWN = ["score", "band", "status", "name", "days_since_last_login", "licenses", "activated_users", "flag"]

FRAME = pl.DataFrame(
    {
        "account": ["a", "b", "c", "d"],
        "score": [1.2, 2.0, None, 3.5],
        "band": ["red", "yellow", None, "green"],
        "status": ["active", "trial", "active", "churned"],
        "name": ["x'; drop table y; --", "Beta", "Gamma", "Delta"],
        "days_since_last_login": [25, 20, None, 3],
        "licenses": [10, 0, 5, 20],
        "activated_users": [9, 0, 1, 10],
        "flag": [True, False, None, True],
    }
)


def matching(condition: str) -> list[str]:
    """The accounts of FRAME for which the condition holds."""
    return FRAME.filter(compile_condition(condition, KNOWN)).get_column("account").to_list()


# -- refusals: nothing reaches Python or SQL


@pytest.mark.parametrize(
    ("text", "column", "fragment"),
    [
        ("__import__('os').system('id')", 1, "'__'"),
        ("score.__class__", 6, "'.'"),
        ("open('/etc/passwd')", 1, "function calls are not allowed"),
        ("score; DROP TABLE x", 6, "';'"),
        ("score == 1 -- c", 12, "'--'"),
        ('exec("x")', 1, "function calls are not allowed"),
        ("[x for x in y]", 1, "brackets"),
        ("lambda: 1", 7, "':'"),
        ("score = 1", 7, "'=='"),
        ("`score` > 1", 1, "backticks"),
        ("score > 1 && band == 'red'", 11, "use 'and'"),
        ("score > 1 AND band == 'red'", 11, "write 'and'"),
        ("score > 1 # comment", 11, "'#'"),
        ("score[0] > 1", 6, "brackets"),
        ("score <> 1", 7, "'!='"),
        ("score ** 2 > 1", 7, "'**'"),
    ],
)
def test_refuses_anything_outside_the_grammar(text, column, fragment):
    with pytest.raises(ExpressionError) as caught:
        parse(text)
    assert caught.value.column == column
    assert fragment in caught.value.message


def test_error_text_shows_a_caret_under_the_column():
    with pytest.raises(ExpressionError) as caught:
        parse("score.__class__")
    assert str(caught.value).splitlines()[1:] == ["score.__class__", "     ^"]
    assert "(column 6)" in str(caught.value)


def test_a_string_containing_sql_is_only_a_string():
    condition = "name == \"x'; drop table y; --\""
    assert variables(condition) == {"name"}
    assert matching(condition) == ["a"]
    assert matching("name == 'drop table y'") == []


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("score >", "ends too early"),
        ("score > 1 score", "after a complete condition"),
        ("(score > 1", "')'"),
        ("score in ()", "empty"),
        ("score in 1, 2", "'('"),
        ("score between 1", "'and'"),
        ("score is 1", "'null'"),
        ("score not 1", "'in' or 'between'"),
        ("1 < score < 3", "chained"),
        ("'unterminated", "never closed"),
        ("12abc > 1", "malformed number"),
        ("score == null", "is null"),
        ("score != null", "is not null"),
        ("score in (1, null)", "is null"),
        ("score and 1", "conditions on both sides"),
        ("score + 1", "true or false"),
        ("(score > 1) + 1 > 0", "arithmetic on a condition"),
        ("name + 'x' == 'y'", "arithmetic on text"),
        ("Score > 1", "lowercase"),
        ("score > 1 or " + "(" * 100 + "score > 1" + ")" * 100, "nested too deeply"),
    ],
)
def test_syntax_errors_say_what_is_wrong(text, fragment):
    with pytest.raises(ExpressionError) as caught:
        parse(text)
    assert fragment in caught.value.message


# -- grammar and precedence


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("a or b and c", "(a or (b and c))"),
        ("a and b or c", "((a and b) or c)"),
        ("not a and b", "((not a) and b)"),
        ("not a == 1", "(not (a == 1))"),
        ("a == 1 or not b > 2 and c", "((a == 1) or ((not (b > 2)) and c))"),
        ("a + b * c > 1", "((a + (b * c)) > 1)"),
        ("(a + b) * c > 1", "(((a + b) * c) > 1)"),
        ("a - b - c > 1", "(((a - b) - c) > 1)"),
        ("a / b / c > 1", "(((a / b) / c) > 1)"),
        ("-a * b > 1", "(((-a) * b) > 1)"),
        ("- - a > 1", "((-(-a)) > 1)"),
        ("a between 1 and 2 and b", "((a between 1 and 2) and b)"),
        ("a between b + 1 and c * 2", "(a between (b + 1) and (c * 2))"),
        ("a not between 1 and 2", "(a not between 1 and 2)"),
        ("a in (1, 2.5, 'x') or b", "((a in (1, 2.5, 'x')) or b)"),
        ("a not in (1)", "(a not in (1))"),
        ("a is null or b is not null", "((a is null) or (b is not null))"),
        ("a == true", "(a == true)"),
        ("a >= 1e3", "(a >= 1000.0)"),
        ("a\n  and b", "(a and b)"),
    ],
)
def test_precedence(text, tree):
    assert str(parse(text)) == tree


def test_variables_and_boolean_positions():
    text = "status == 'active' and (flag or not other) and x + y > 1"
    assert variables(text) == {"status", "flag", "other", "x", "y"}
    assert boolean_variables(text) == {"flag", "other"}
    assert variables(parse("score < 1")) == {"score"}


# -- evaluation on a frame


@pytest.mark.parametrize(
    ("condition", "accounts"),
    [
        ("score < 1.5", ["a"]),
        ("score >= 2 and score <= 3.5", ["b", "d"]),
        ("score between 2 and 3.5", ["b", "d"]),  # inclusive at both ends
        ("score not between 2 and 3.5", ["a"]),  # null score (c) matches neither
        ("days_since_last_login >= 20", ["a", "b"]),
        ("status == 'active' and days_since_last_login >= 20", ["a"]),
        ("status in ('active', \"trial\")", ["a", "b", "c"]),
        ("status not in ('active', 'trial')", ["d"]),
        ("days_since_last_login in (3, 25)", ["a", "d"]),
        ("score is null", ["c"]),
        ("score is not null", ["a", "b", "d"]),
        ("band == 'red' or band == 'green'", ["a", "d"]),
        ("not band == 'red'", ["b", "d"]),  # not (null) stays false: c has no band
        ("flag", ["a", "d"]),
        ("not flag", ["b"]),
        ("flag == false", ["b"]),
        ("score > 1 or flag", ["a", "b", "d"]),
        ("activated_users / licenses >= 0.5", ["a", "d"]),  # b divides by zero: no figure
        ("activated_users * 2 - licenses == 8", ["a"]),
        ("-score < -3", ["d"]),
        ("licenses - activated_users between 1 and 5", ["a", "c"]),
        ("days_since_last_login is null or days_since_last_login > 20", ["a", "c"]),
    ],
)
def test_conditions_select_the_expected_rows(condition, accounts):
    assert matching(condition) == accounts


def test_null_comparisons_are_false_not_null():
    result = FRAME.select(compile_condition("score < 10", KNOWN).alias("hit")).get_column("hit")
    assert result.to_list() == [True, True, False, True]
    assert result.null_count() == 0


# -- unknown variables


def test_unknown_variable_suggests_the_closest_name():
    with pytest.raises(ExpressionError) as caught:
        compile_condition("band == 'red' and scroe < 1", KNOWN)
    error = caught.value
    assert error.message.startswith("unknown variable 'scroe'; did you mean 'score'? valid variables: ")
    assert "days_since_last_login" in error.message
    assert error.column == 19
    assert error.reason == "unknown variable 'scroe'; did you mean 'score'?"
    assert error.choices == sorted(KNOWN)


def test_unknown_variable_without_a_close_name():
    with pytest.raises(ExpressionError) as caught:
        compile_condition("zzz > 1", KNOWN)
    assert caught.value.message.startswith("unknown variable 'zzz'; valid variables: activated_users, band")


# -- words


@pytest.mark.parametrize(
    ("condition", "words"),
    [
        ("days_since_last_login >= 20", "days since last login is at least 20"),
        ("score < 1.5", "score is below 1.5"),
        ("score_change_30d <= -1.0", "score change 30d is at most -1.0"),
        ("status == 'active' and x > 1", "status is 'active' and x is above 1"),
        ("d in (30, 90, 180)", "d is one of 30, 90 or 180"),
        ("d not in (1, 2)", "d is none of 1 or 2"),
        ("d between 90 and 96", "d is between 90 and 96"),
        ("latest_nps is null", "latest nps is unknown"),
        ("(a or b) and c", "(a or b) and c"),
        ("not (a > 1)", "not (a is above 1)"),
        ("a / b != 2", "a divided by b is not 2"),
    ],
)
def test_describe(condition, words):
    assert describe(condition) == words


# -- limits: refused when the rule is loaded, before polars sees anything (issue 14)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        # 20,000 items hung a run inside polars; refused at the 101st item
        ("score in (" + ", ".join(str(i) for i in range(20_000)) + ")", "characters long (the limit is 5,000)"),
        ("score in (" + ", ".join(str(i) for i in range(500)) + ")", "more than 100 items"),
        # 1,500 `and` terms crashed with a bare RecursionError
        (" and ".join(["flag"] * 1_500), "characters long (the limit is 5,000)"),
        (" and ".join(["flag"] * 500), "more than 500 parts"),
        # 9 * 9 * ... (30 nines) wrapped around Int64 and fired for every account
        ("score > " + " * ".join(["9"] * 30), "numbers are limited to ±1e+15"),
        ("score > 10000000000000000", "numbers are limited to ±1e+15"),
        ("score > 1e400", "too large"),
        ("score > " + "9" * 5000, "characters long"),
        ("score > 1 and name == '" + "x" * 201 + "'", "limited to 200 characters"),
        ("score" + " + score" * 40 + " > 1", "nested too deeply: more than 32 levels"),
        ("not " * 40 + "flag", "nested too deeply"),
        ("- " * 40 + "score > 1", "nested too deeply"),
    ],
)
def test_limits_are_refused_at_parse_time_with_the_limit(text, fragment):
    import time

    started = time.monotonic()
    with pytest.raises(ExpressionError) as caught:
        compile_condition(text, KNOWN)
    assert fragment in caught.value.message
    assert "\n" not in caught.value.message
    assert time.monotonic() - started < 1


def test_within_the_limits_long_chains_and_lists_compile_flat_and_fast():
    import time

    started = time.monotonic()
    chain = " or ".join(f"days_since_last_login == {i}" for i in range(120))  # 479 parts
    assert matching(chain) == ["a", "b", "d"]
    assert matching("score in (" + ", ".join(str(i) for i in range(100)) + ")") == ["b"]
    assert matching(" and ".join(["flag"] * 200)) == ["a", "d"]
    assert time.monotonic() - started < 2
    assert str(parse("a and b and c")) == "((a and b) and c)"
    assert str(parse("a and b and c and d")) == "((a and b) and (c and d))"
    assert str(parse("score > " + "0" * 4400 + "1")) == "(score > 1)"  # longer than Python's int() takes


def test_in_lists_keep_null_semantics_and_mixed_items():
    assert matching("days_since_last_login in (3, 25)") == ["a", "d"]
    assert matching("days_since_last_login not in (3, 25)") == ["b"]  # null (c) matches neither
    assert matching("score in (2, 3.5)") == ["b", "d"]
    assert matching("band in ('red', 'green')") == ["a", "d"]
    assert matching("band not in ('red', 'green')") == ["b"]
    assert matching("licenses in (activated_users + 1, 20)") == ["a", "d"]
    assert matching("flag in (true)") == ["a", "d"]


def test_arithmetic_cannot_wrap_around():
    frame = pl.DataFrame({"big": [2**62, 1], "score": [1.0, 1.0]})
    big = compile_condition("big * 1000000 > 0", ["big", "score"])
    assert frame.filter(big).height == 2  # as integers 2**62 * 10**6 wraps to a negative number
    constant = compile_condition("score < 100000 * 100000", ["score"])  # polars computes 10**10 in 32 bits
    assert frame.filter(constant).height == 2
