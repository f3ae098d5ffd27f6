"""The input contract (CONTRACT.md §1): entities, their columns and rules, and how rows are checked.

Every connector lands the same entities with the same columns; this module turns whatever was
read into typed rows that passed the rules, and rejected rows that say which rule they broke.
Nothing here knows about Dagster or dlt. Reading the `files` source's exports is `logic.exports`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

SEGMENTS = ("enterprise", "mid_market", "smb")
ACCOUNT_STATUSES = ("trial", "active", "churned")
ROLES = ("admin", "member")
TICKET_STATUSES = ("open", "pending", "resolved", "closed")
TICKET_PRIORITIES = ("low", "normal", "high", "urgent")
ACTIVITY_TYPES = ("call", "email", "meeting", "qbr", "note")
ENGAGEMENT_TYPES = ("email_click", "webinar", "community_post", "event")

LINE = "_line"
SOURCE = "source_file"


@dataclass(frozen=True)
class Column:
    name: str
    kind: str = "string"  # string | timestamp | date | integer | decimal
    required: bool = False
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True)
class Entity:
    name: str
    file: str
    key: str
    columns: tuple[Column, ...]
    optional: bool = False
    # How several rows with one key are handled: "reject" keeps the first and rejects the rest,
    # "latest:<column>" keeps them all (staging keeps the latest), "first" keeps one silently
    # because the contract says a re-delivery counts once.
    duplicates: str = "reject"
    checks: tuple[str, ...] = field(default=())

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.required]


def _ts(name: str, required: bool = False) -> Column:
    return Column(name, "timestamp", required=required)


ENTITIES: dict[str, Entity] = {
    entity.name: entity
    for entity in (
        Entity(
            "accounts",
            "accounts.csv",
            "account_id",
            (
                Column("account_id", required=True),
                Column("name", required=True),
                Column("segment", required=True, choices=SEGMENTS),
                Column("owner_email"),
                Column("plan"),
                Column("licenses", "integer", required=True, minimum=0),
                Column("status", required=True, choices=ACCOUNT_STATUSES),
                _ts("created_at"),
            ),
        ),
        Entity(
            "contracts",
            "contracts.csv",
            "contract_id",
            (
                Column("contract_id", required=True),
                Column("account_id", required=True),
                Column("start_date", "date", required=True),
                Column("end_date", "date", required=True),
                Column("arr", "decimal", required=True, minimum=0),
            ),
            checks=("end_after_start", "known_account"),
        ),
        Entity(
            "users",
            "users.csv",
            "user_id",
            (
                Column("user_id", required=True),
                Column("account_id", required=True),
                Column("email"),
                Column("role", choices=ROLES),
                _ts("created_at"),
                _ts("activated_at"),
                _ts("deactivated_at"),
            ),
        ),
        Entity(
            "tickets",
            "tickets.jsonl",
            "ticket_id",
            (
                Column("ticket_id", required=True),
                Column("account_id", required=True),
                _ts("created_at", required=True),
                _ts("updated_at", required=True),
                Column("status", required=True, choices=TICKET_STATUSES),
                Column("priority", required=True, choices=TICKET_PRIORITIES),
                Column("subject"),
                Column("csat", "integer", minimum=1, maximum=5),
            ),
            duplicates="latest:updated_at",
        ),
        Entity(
            "nps_responses",
            "nps_responses.csv",
            "response_id",
            (
                Column("response_id", required=True),
                Column("account_id", required=True),
                Column("user_id"),
                Column("score", "integer", required=True, minimum=0, maximum=10),
                Column("comment"),
                _ts("submitted_at", required=True),
            ),
        ),
        Entity(
            "activities",
            "activities.csv",
            "activity_id",
            (
                Column("activity_id", required=True),
                Column("account_id", required=True),
                Column("owner_email"),
                Column("type", required=True, choices=ACTIVITY_TYPES),
                _ts("occurred_at", required=True),
            ),
        ),
        Entity(
            "engagements",
            "engagements.csv",
            "engagement_id",
            (
                Column("engagement_id", required=True),
                Column("account_id", required=True),
                Column("type", required=True, choices=ENGAGEMENT_TYPES),
                _ts("occurred_at", required=True),
            ),
            optional=True,
        ),
        Entity(
            "events",
            "events/date=YYYY-MM-DD/*",
            "event_id",
            (
                Column("event_id", required=True),
                Column("account_id", required=True),
                Column("user_id"),
                Column("event", required=True),
                _ts("occurred_at", required=True),
            ),
            duplicates="first",
            checks=("inside_day",),
        ),
    )
}

SNAPSHOT_ENTITIES = tuple(name for name in ENTITIES if name != "events")
EVENT_FILE_SUFFIXES = (".parquet", ".jsonl", ".jsonl.gz", ".csv")


class SourceFileError(Exception):
    """A file that cannot be used at all: the asset fails with one line, `<file>: <cause>`.

    `path` and `cause` are kept apart for whoever reports it (the run log, a failure notice).
    """

    def __init__(self, path: str | Path, cause: str | None = None) -> None:
        self.path = str(path)
        self.cause = " ".join(str(cause).split()) if cause is not None else ""
        super().__init__(f"{self.path}: {self.cause}" if cause is not None else self.path)


@dataclass
class Validated:
    """The outcome of checking one entity's rows."""

    entity: str
    valid: pl.DataFrame
    rejected: pl.DataFrame  # REJECTED_SCHEMA
    duplicates_dropped: int = 0


REJECTED_SCHEMA = {
    "entity": pl.String,
    "partition_date": pl.Date,
    "source_file": pl.String,
    "line": pl.Int64,
    "record_key": pl.String,
    "reason": pl.String,
    "record": pl.String,
}


# --- validation ------------------------------------------------------------------------------


def normalise_timestamp(expr: pl.Expr) -> pl.Expr:
    """ISO-8601 text to a naive UTC datetime; a timestamp without offset is UTC; bad text → null."""
    text = (
        expr.str.strip_chars()
        .str.replace(r"^(\d{4}-\d\d-\d\d)$", "${1}T00:00:00")
        .str.replace(r"^(\d{4}-\d\d-\d\d) ", "${1}T")
        .str.replace(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d)([^:\d]|$)", "${1}:00${2}")
        .str.replace(r"[zZ]$", "+00:00")
    )
    with_offset = pl.when(text.str.contains(r"[+-]\d\d:?\d\d$")).then(text).otherwise(text + "+00:00")
    return (
        with_offset.str.to_datetime(format="%Y-%m-%dT%H:%M:%S%.f%z", time_zone="UTC", strict=False)
        .dt.replace_time_zone(None)
        .dt.cast_time_unit("us")
    )


# The form exports usually write (`2025-06-04T09:15:47Z`, with or without a fraction). Parsed
# directly it gives exactly what `normalise_timestamp` gives, about 5x faster; the regexes are
# only run on the values this format does not parse.
_USUAL_TIMESTAMP = "%Y-%m-%dT%H:%M:%S%.fZ"


def parse_timestamps(text: pl.Series) -> pl.Series:
    """`normalise_timestamp` over a text Series, with a fast path for the usual export form."""
    parsed = text.str.to_datetime(format=_USUAL_TIMESTAMP, strict=False, time_unit="us")
    rest = (parsed.is_null() & text.is_not_null()).arg_true()
    if rest.len():
        parsed = parsed.scatter(rest, pl.select(normalise_timestamp(pl.lit(text.gather(rest)))).to_series())
    return parsed


def _is_text(dtype: pl.DataType) -> bool:
    return dtype == pl.String or isinstance(dtype, (pl.Categorical, pl.Enum))


def _given(column: Column, dtype: pl.DataType) -> pl.Expr:
    """True where the column holds a value: not null, and for text not blank."""
    col = pl.col(column.name)
    if _is_text(dtype):
        # `\S` is Unicode-aware, so this equals `strip_chars() != ""` without building stripped copies.
        return col.cast(pl.String).str.contains(r"\S").fill_null(False)
    # Already typed (parquet, a database): present means not null, with no text round trip.
    return col.is_not_null()


def _typed(column: Column, frame: pl.DataFrame) -> pl.Expr | pl.Series:
    """The column converted to its contract type (null where the text does not parse)."""
    col, dtype = pl.col(column.name), frame.schema[column.name]
    if column.kind == "timestamp":
        if isinstance(dtype, pl.Datetime):
            converted = col.dt.convert_time_zone("UTC") if dtype.time_zone else col
            return converted.dt.replace_time_zone(None).dt.cast_time_unit("us")
        if dtype == pl.Date:
            return col.cast(pl.Datetime("us"))
        return parse_timestamps(frame.get_column(column.name).cast(pl.String))
    if column.kind == "date":
        if dtype == pl.Date:
            return col
        return col.cast(pl.String).str.strip_chars().str.to_date("%Y-%m-%d", strict=False)
    if column.kind == "integer":
        if dtype.is_integer():
            return col.cast(pl.Int64)
        as_float = col.cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)
        return pl.when(as_float == as_float.floor()).then(as_float.cast(pl.Int64, strict=False))
    if column.kind == "decimal":
        return col.cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)
    return pl.when(pl.col(f"__given_{column.name}")).then(col.cast(pl.String))


@dataclass(frozen=True)
class _Rule:
    """One rule: where a row breaks it (cheap, over every row) and the reason text (built only for
    the rows that break some rule: formatting 10M values as text costs seconds)."""

    broken: pl.Expr
    reason: pl.Expr


def _rules(entity: Entity) -> list[_Rule]:
    rules: list[_Rule] = []
    for column in entity.columns:
        raw = pl.col(column.name).cast(pl.String).str.strip_chars()
        typed = pl.col(f"__typed_{column.name}")
        given = pl.col(f"__given_{column.name}")
        if column.required:
            rules.append(_Rule(~given, pl.lit(f"{column.name} is required")))
        if column.kind != "string":
            what = {"timestamp": "an ISO-8601 timestamp", "date": "a date (YYYY-MM-DD)",
                    "integer": "an integer", "decimal": "a number"}[column.kind]
            rules.append(_Rule(given & typed.is_null(), pl.format(f"{column.name}: '{{}}' is not {what}", raw)))
        if column.choices:
            rules.append(_Rule(
                given & ~raw.is_in(list(column.choices)),
                pl.format(f"{column.name}: '{{}}' is not one of {', '.join(column.choices)}", raw),
            ))
        if column.minimum is not None:
            rules.append(_Rule(typed < column.minimum, pl.format(f"{column.name}: {{}} is below {column.minimum:g}", raw)))
        if column.maximum is not None:
            rules.append(_Rule(typed > column.maximum, pl.format(f"{column.name}: {{}} is above {column.maximum:g}", raw)))
    return rules


def validate(
    entity_name: str,
    frame: pl.DataFrame,
    *,
    known_accounts: Iterable[str] | None = None,
    day: dt.date | None = None,
) -> Validated:
    """Split rows into typed valid rows and rejected rows with their reasons.

    `known_accounts` enables the contracts rule "account_id must exist in accounts"; `day` is the
    events folder's day, which every `occurred_at` must fall inside.
    """
    entity = ENTITIES[entity_name]
    if LINE not in frame.columns:
        frame = frame.with_row_index(LINE, offset=1).with_columns(pl.col(LINE).cast(pl.Int64))
    if SOURCE not in frame.columns:
        frame = frame.with_columns(pl.lit(None, pl.String).alias(SOURCE))
    frame = frame.with_columns(
        _given(column, frame.schema[column.name]).alias(f"__given_{column.name}") for column in entity.columns
    ).with_columns(
        _typed(column, frame).alias(f"__typed_{column.name}") for column in entity.columns
    )
    rules = _rules(entity)
    if "end_after_start" in entity.checks:
        rules.append(_Rule(pl.col("__typed_end_date") < pl.col("__typed_start_date"), pl.lit("end_date is before start_date")))
    if "known_account" in entity.checks and known_accounts is not None:
        accounts = pl.Series(list(known_accounts), dtype=pl.String)
        rules.append(_Rule(
            pl.col("account_id").is_not_null() & ~pl.col("account_id").is_in(accounts.implode()),
            pl.format("account_id: '{}' does not exist in accounts", pl.col("account_id")),
        ))
    if "inside_day" in entity.checks and day is not None:
        start = dt.datetime.combine(day, dt.time())
        occurred = pl.col("__typed_occurred_at")
        rules.append(_Rule(
            (occurred < start) | (occurred >= start + dt.timedelta(days=1)),
            pl.format(f"occurred_at: {{}} is outside its folder's day {day.isoformat()}", occurred.cast(pl.String)),
        ))
    broken = pl.any_horizontal([rule.broken for rule in rules]).fill_null(False)
    reason = pl.concat_str([pl.when(rule.broken).then(rule.reason) for rule in rules], separator="; ", ignore_nulls=True)
    if "_broken" in frame.columns:
        # A line that is not JSON has no fields to check: its parse error is the whole reason.
        broken = broken | pl.col("_broken").is_not_null()
        reason = pl.when(pl.col("_broken").is_not_null()).then(pl.col("_broken")).otherwise(reason)
    frame = frame.with_columns(broken.alias("__broken"))

    frame, duplicates_dropped = _handle_duplicates(entity, frame)
    if "__first_line" in frame.columns:
        reason = pl.when(pl.col("__first_line").is_not_null()).then(
            pl.format(f"duplicate {entity.key} '{{}}' (first at line {{}})", pl.col(entity.key), pl.col("__first_line"))
        ).otherwise(reason)

    bad = frame.filter(pl.col("__broken")).with_columns(reason.alias("__reason"))
    good = frame.filter(~pl.col("__broken"))
    extra = [c for c in frame.columns if not c.startswith("__") and c not in entity.column_names and c not in (LINE, SOURCE, "_broken", "_raw")]
    valid = good.select(
        *[pl.col(f"__typed_{c.name}").alias(c.name) for c in entity.columns],
        *[pl.col(c).cast(pl.String) for c in extra],
        pl.col(SOURCE),
    )
    return Validated(entity.name, valid, _rejected_rows(entity, bad, day), duplicates_dropped)


def _handle_duplicates(entity: Entity, frame: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Apply the entity's duplicate policy to the rows that break no rule.

    "first" drops every later occurrence of a key; "reject" marks them broken, with the line of
    the first occurrence in `__first_line`; "latest:..." keeps them all.
    """
    if entity.duplicates.startswith("latest:"):
        return frame, 0
    key = pl.col(entity.key)
    candidate = ~pl.col("__broken") & key.is_not_null()
    keys = frame.filter(candidate).get_column(entity.key)
    if keys.hash().n_unique() == keys.len():
        # The usual case: distinct hashes mean distinct keys, so there is nothing to rank (hashing
        # 10M ids costs ~0.2 s, counting the distinct strings ~3 s, ranking them ~8 s). A hash
        # collision only takes the exact path below.
        return frame, 0
    occurrence = pl.when(candidate).then(pl.int_range(pl.len()).over(candidate, entity.key))
    if entity.duplicates == "first":
        kept = frame.filter(occurrence.is_null() | (occurrence == 0))
        return kept, frame.height - kept.height
    first_line = pl.col(LINE).min().over(candidate, entity.key)
    flagged = frame.with_columns(pl.when(occurrence > 0).then(first_line).alias("__first_line"))
    return flagged.with_columns(pl.col("__broken") | pl.col("__first_line").is_not_null()), 0


def _rejected_rows(entity: Entity, bad: pl.DataFrame, day: dt.date | None) -> pl.DataFrame:
    if bad.height == 0:
        return pl.DataFrame(schema=REJECTED_SCHEMA)
    record_columns = [c for c in bad.columns if not c.startswith("__") and c not in (LINE, SOURCE, "_broken", "_raw")]
    record = pl.struct([pl.col(c).cast(pl.String) for c in record_columns]).struct.json_encode()
    if "_raw" in bad.columns:
        record = pl.when(pl.col("_raw").is_not_null()).then(pl.col("_raw")).otherwise(record)
    return bad.select(
        pl.lit(entity.name).alias("entity"),
        pl.lit(day, pl.Date).alias("partition_date"),
        pl.col(SOURCE).cast(pl.String).alias("source_file"),
        pl.col(LINE).cast(pl.Int64).alias("line"),
        pl.col(entity.key).cast(pl.String).alias("record_key"),
        pl.col("__reason").alias("reason"),
        record.alias("record"),
    )


def summarise_reasons(rejected: pl.DataFrame, limit: int = 5) -> str:
    """The most frequent rejection reasons as a short Markdown list, for asset metadata."""
    if rejected.height == 0:
        return "No rows rejected."
    first_reason = rejected.select(pl.col("reason").str.split("; ").list.first().str.replace(r"'[^']*'", "'…'"))
    counts = first_reason.group_by("reason").len().sort(["len", "reason"], descending=[True, False]).head(limit)
    example = rejected.head(1).row(0, named=True)
    lines = [f"- {row['len']} × {row['reason']}" for row in counts.iter_rows(named=True)]
    lines.append(f"\nFirst: `{example['source_file']}` line {example['line']}: {example['reason']}")
    return "\n".join(lines)
