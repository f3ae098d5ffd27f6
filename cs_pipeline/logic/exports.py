"""Reading the `files` source's exports (CSV, JSON lines, parquet) into frames for `validate`.

Each reader gives the file's columns (as text, except parquet's own types) plus `_line` and
`source_file`, so every rejected row can name its file and line. A row that cannot be read (a
JSON line that is not an object, or not UTF-8) is kept with its reason in `_broken` and rejected
by `validate`; the other rows are used. A file that cannot be used at all raises SourceFileError,
whose text is one line: the file, then the cause.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
from pathlib import Path

import polars as pl

from cs_pipeline.logic.contract import ENTITIES, EVENT_FILE_SUFFIXES, LINE, SOURCE, Entity, SourceFileError

__all__ = ["read_entity_file", "event_day_files", "read_event_file"]


def read_entity_file(data_dir: Path, entity: Entity) -> pl.DataFrame | None:
    """Read one snapshot entity's export as text columns plus `_line` and `source_file`.

    Returns None for an optional file that is absent. Raises SourceFileError for a file that is
    missing or cannot be read at all, or that lacks a required column.
    """
    path = data_dir / entity.file
    if not path.exists():
        if entity.optional:
            return None
        raise SourceFileError(path, f"file not found (the {entity.name} export is required)")
    frame = _read_csv(path) if path.suffix == ".csv" else _read_jsonl(path)
    return _conform(frame, entity, path)


def event_day_files(data_dir: Path, day: dt.date) -> list[Path]:
    folder = data_dir / "events" / f"date={day.isoformat()}"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(EVENT_FILE_SUFFIXES))


def read_event_file(path: Path) -> pl.DataFrame:
    """One events file, typed natively where the format allows (parquet) and as text otherwise."""
    if path.name.endswith(".parquet"):
        frame = _read_parquet(path)
    elif path.name.endswith(".csv"):
        frame = _read_csv(path)
    else:
        frame = _read_jsonl(path)
    return _conform(frame, ENTITIES["events"], path)


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as exc:
        raise SourceFileError(path, f"cannot be read: {exc.strerror or exc}") from None


def _read_parquet(path: Path) -> pl.DataFrame:
    if _size(path) == 0:
        raise SourceFileError(path, "the file is empty (0 bytes), not a parquet file")
    try:
        frame = pl.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - any reader failure is "this file cannot be read"
        # `from None`: the file's line is the whole story; polars' own error would hide the name.
        raise SourceFileError(path, f"cannot be read as parquet: {_first_line(exc)}") from None
    return frame.with_row_index(LINE, offset=1).with_columns(pl.col(LINE).cast(pl.Int64))


def _read_csv(path: Path) -> pl.DataFrame:
    if _size(path) == 0:
        raise SourceFileError(path, "the file is empty (0 bytes): a CSV export starts with its header line")
    try:
        frame = pl.read_csv(path, infer_schema=False)
    except Exception as exc:  # noqa: BLE001
        raise SourceFileError(path, _csv_cause(path, exc)) from None
    # Line 1 is the header; data rows start at line 2 (multi-line quoted fields aside).
    return frame.with_row_index(LINE, offset=2).with_columns(pl.col(LINE).cast(pl.Int64))


def _csv_cause(path: Path, error: Exception) -> str:
    """Why polars could not read a CSV, in the reader's words; for text that is not UTF-8 (an
    export saved as Latin-1 or Windows-1252), where the first such byte is."""
    try:
        path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"is not UTF-8 text: {_where_not_utf8(exc)}; save the export as UTF-8"
    except OSError:
        pass
    return f"cannot be read as CSV: {_first_line(error)}"


def _where_not_utf8(error: UnicodeDecodeError) -> str:
    data = error.object
    line = data.count(b"\n", 0, error.start) + 1
    return f"byte 0x{data[error.start]:02x} on line {line}"


def _read_jsonl(path: Path) -> pl.DataFrame:
    """Read JSON lines as text columns; a broken line is rejected, not the whole file.

    A well-formed file (every line an object whose values are text, integers, booleans or null)
    is read by polars in one pass, about 4x faster; any other file is read line by line, so that
    each broken line gets its own reason. Both give the same text and line numbers, and an object
    that repeats a key keeps its first value. A file in which no line is a JSON object (a CSV or
    a JSON document under a .jsonl name, say) cannot be used at all.
    """
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as exc:
        raise SourceFileError(path, f"cannot be read: {_first_line(exc)}") from None
    frame = _read_jsonl_at_once(data)
    if frame is not None:
        return frame
    frame = _read_jsonl_by_line(path, data)
    if "_broken" in frame.columns and frame.get_column("_broken").is_not_null().all():
        first = frame.row(0, named=True)
        raise SourceFileError(path, f"is not JSON lines: no line is a JSON object (line {first[LINE]}: {first['_broken']})")
    return frame


_AT_ONCE_TYPES = (pl.String, pl.Int64, pl.Boolean, pl.Null)


def _read_jsonl_at_once(data: bytes) -> pl.DataFrame | None:
    """The whole file with polars, or None when it needs the line-by-line reader: a line that is
    not an object, a blank line (the row count would not match the line count), or a value whose
    text polars would not write as `_as_text` does (decimals, nested values)."""
    lines = data.count(b"\n") + (not data.endswith(b"\n"))
    try:
        frame = pl.read_ndjson(io.BytesIO(data), infer_schema_length=None)
    except Exception:  # noqa: BLE001 - the line-by-line reader says what is wrong, line by line
        return None
    if frame.height != lines or lines == 0 or any(dtype not in _AT_ONCE_TYPES for dtype in frame.dtypes):
        return None
    frame = frame.with_columns(pl.col(c).cast(pl.String) for c in frame.columns).with_row_index(LINE, offset=1)
    return _in_key_order(frame.with_columns(pl.col(LINE).cast(pl.Int64)))


def _in_key_order(frame: pl.DataFrame) -> pl.DataFrame:
    """Keys in name order: JSON objects need not list them in the same order on every line."""
    return frame.select(LINE, *sorted(c for c in frame.columns if c != LINE))


def _first_value(pairs: list[tuple[str, object]]) -> dict[str, object]:
    record: dict[str, object] = {}
    for key, value in pairs:
        record.setdefault(key, value)
    return record


def _read_jsonl_by_line(path: Path, data: bytes) -> pl.DataFrame:
    records: list[dict[str, object]] = []
    broken: list[dict[str, object]] = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            # One line in another encoding: that line is rejected, the others are used.
            where = f"byte 0x{raw[exc.start]:02x} at column {len(raw[: exc.start].decode('utf-8', 'replace')) + 1}"
            broken.append({LINE: number, "_broken": f"not UTF-8 text: {where}", "_raw": raw.decode("utf-8", "replace").strip()[:2000]})
            continue
        if not line.strip():
            continue
        try:
            value = json.loads(line, object_pairs_hook=_first_value)
        except json.JSONDecodeError as exc:
            broken.append({LINE: number, "_broken": f"invalid JSON: {exc.msg}", "_raw": line.strip()[:2000]})
            continue
        if not isinstance(value, dict):
            broken.append({LINE: number, "_broken": "not a JSON object", "_raw": line.strip()[:2000]})
            continue
        records.append({**{k: _as_text(v) for k, v in value.items()}, LINE: number})
    frame = pl.DataFrame(records, infer_schema_length=None) if records else pl.DataFrame({LINE: []})
    frame = _in_key_order(frame.with_columns(pl.col(LINE).cast(pl.Int64)))
    if broken:
        frame = pl.concat([frame, pl.DataFrame(broken).with_columns(pl.col(LINE).cast(pl.Int64))], how="diagonal")
    return frame


def _as_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value)


def _conform(frame: pl.DataFrame, entity: Entity, path: Path) -> pl.DataFrame:
    missing = [c for c in entity.required_columns if c not in frame.columns]
    if missing and frame.height > 0:
        raise SourceFileError(
            path,
            f"missing required column(s) {', '.join(missing)}; "
            f"the {entity.name} export has columns {', '.join(entity.column_names)}",
        )
    for column in entity.columns:
        dtype = frame.schema.get(column.name)
        if dtype is not None and (dtype.is_nested() or dtype in (pl.Binary, pl.Object)):
            # A parquet column of lists or structs: no rule of the contract can read it.
            raise SourceFileError(path, f"column {column.name} holds {dtype}, not a {column.kind}")
    absent = [pl.lit(None, pl.String).alias(c) for c in entity.column_names if c not in frame.columns]
    if absent:
        frame = frame.with_columns(absent)
    return frame.with_columns(pl.lit(str(path)).alias(SOURCE))
