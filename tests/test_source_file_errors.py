"""Files that cannot be read are named, with the cause, in one line (issue 14): on the reader, and
on the command line of a run. Rows that can be used are used; broken ones are rejected with why."""

from __future__ import annotations

import datetime as dt
import gzip
import sys

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cs_pipeline.logic.contract import ENTITIES, SourceFileError, validate
from cs_pipeline.logic.exports import read_entity_file, read_event_file
from cs_pipeline.sources.files import FilesConnector

DAY = dt.date(2025, 3, 10)
EVENT = '{"event_id": "e%d", "account_id": "a", "user_id": "u", "event": "login", "occurred_at": "2025-03-10T08:00:00Z"}'
HEADER = "event_id,account_id,user_id,event,occurred_at\n"


@pytest.fixture
def fresh_definitions():
    """`cs_pipeline.definitions` imported afresh (it reads the environment when imported, as a new
    process would), and the module of before put back after the test."""
    saved = sys.modules.pop("cs_pipeline.definitions", None)
    yield
    sys.modules.pop("cs_pipeline.definitions", None)
    if saved is not None:
        sys.modules["cs_pipeline.definitions"] = saved


def refused(path) -> str:
    with pytest.raises(SourceFileError) as caught:
        read_event_file(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    assert caught.value.path == str(path) and message == f"{path}: {caught.value.cause}"
    assert caught.value.__cause__ is None and (caught.value.__context__ is None or caught.value.__suppress_context__)
    return caught.value.cause


def test_a_zero_byte_parquet_is_named(tmp_path):
    path = tmp_path / "part-0.parquet"
    path.write_bytes(b"")
    assert refused(path) == "the file is empty (0 bytes), not a parquet file"


def test_a_garbage_parquet_is_named(tmp_path):
    path = tmp_path / "part-0.parquet"
    path.write_bytes(b"this is not parquet at all, just some bytes")
    assert refused(path).startswith("cannot be read as parquet: ")


def test_a_zero_byte_csv_is_named(tmp_path):
    path = tmp_path / "part-0.csv"
    path.write_bytes(b"")
    assert refused(path) == "the file is empty (0 bytes): a CSV export starts with its header line"


def test_a_latin1_csv_says_where_it_is_not_utf8(tmp_path):
    path = tmp_path / "part-0.csv"
    path.write_bytes((HEADER + "e1,a,u,login,2025-03-10T08:00:00Z\ne2,Café,u,login,2025-03-10T09:00:00Z\n").encode("latin-1"))
    assert refused(path) == "is not UTF-8 text: byte 0xe9 on line 3; save the export as UTF-8"


def test_a_latin1_snapshot_export_is_named_too(tmp_path):
    (tmp_path / "accounts.csv").write_bytes("account_id,name\na1,Société\n".encode("latin-1"))
    with pytest.raises(SourceFileError, match=r"accounts.csv: is not UTF-8 text: byte 0xe9 on line 2"):
        read_entity_file(tmp_path, ENTITIES["accounts"])


@pytest.mark.parametrize(
    ("text", "cause"),
    [
        ("not json\n", "line 1: invalid JSON: Expecting value"),
        (HEADER + "e1,a,u,login,2025-03-10T08:00:00Z\n", "line 1: invalid JSON: Expecting value"),  # a CSV named .jsonl
        ('[{"event_id": "e1"},\n {"event_id": "e2"}]\n', "line 1: invalid JSON: Expecting value"),  # a JSON document
        ("123\n[1]\n", "line 1: not a JSON object"),
    ],
)
def test_a_json_lines_file_with_no_json_object_is_named_not_missing_columns(tmp_path, text, cause):
    path = tmp_path / "part-0.jsonl"
    path.write_text(text)
    assert refused(path) == f"is not JSON lines: no line is a JSON object ({cause})"


def test_a_json_lines_file_whose_first_line_is_broken_uses_the_rest(tmp_path):
    path = tmp_path / "part-0.jsonl"
    path.write_bytes(b"not json\n" + (EVENT % 1).encode() + b"\n" + (EVENT % 2).replace('"a"', '"Caf\xe9"').encode("latin-1") + b"\n")
    result = validate("events", read_event_file(path), day=DAY)
    assert result.valid["event_id"].to_list() == ["e1"]
    assert result.rejected.select("line", "reason").rows() == [
        (1, "invalid JSON: Expecting value"),
        (3, "not UTF-8 text: byte 0xe9 at column 38"),
    ]
    assert result.rejected["source_file"].to_list() == [str(path)] * 2


def test_a_broken_gzip_is_named(tmp_path):
    path = tmp_path / "part-0.jsonl.gz"
    path.write_bytes(b"plain text, not gzip")
    assert refused(path).startswith("cannot be read: Not a gzipped file")


def test_a_parquet_column_of_lists_is_named(tmp_path):
    path = tmp_path / "part-0.parquet"
    pq.write_table(pa.table({"event_id": [["e1"]], "account_id": ["a"], "event": ["login"], "occurred_at": ["2025-03-10T08:00:00Z"]}), path)
    assert refused(path) == "column event_id holds List(String), not a string"


def test_the_other_files_of_the_day_are_fine_and_a_good_day_reads(tmp_path):
    folder = tmp_path / "events" / f"date={DAY}"
    folder.mkdir(parents=True)
    (folder / "a.jsonl").write_text(EVENT % 1 + "\n")
    gzip.open(folder / "b.jsonl.gz", "wt").write(EVENT % 2 + "\n")
    extract = FilesConnector(data_dir=str(tmp_path)).events(DAY)
    assert sorted(extract.frame["event_id"].to_list()) == ["e1", "e2"]
    pl.DataFrame({"event_id": [1], "account_id": ["a"], "event": ["login"], "occurred_at": [dt.datetime(2025, 3, 10)]}).write_parquet(folder / "c.parquet")
    extract = FilesConnector(data_dir=str(tmp_path)).events(DAY)  # an integer id beside text ids: read as text
    assert sorted(extract.frame["event_id"].cast(pl.String).to_list()) == ["1", "e1", "e2"]


# -- end to end: `cs-pipeline run` over two days, one events file corrupt


@pytest.mark.e2e
def test_a_run_with_a_corrupt_events_file_exits_non_zero_naming_the_file(tmp_path, monkeypatch, capsys, fresh_definitions):
    from cs_pipeline import cli
    from tests.support import planted

    data = planted.write(tmp_path / "data")
    corrupt = data / "events" / "date=2025-03-02" / "part-0.parquet"
    assert corrupt.exists()
    corrupt.write_bytes(b"")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    for name, value in (("CS_PIPELINE_WAREHOUSE", tmp_path / "warehouse.duckdb"), ("CS_PIPELINE_DATA_DIR", data)):
        monkeypatch.setenv(name, str(value))  # the command sets them; restored after the test
    monkeypatch.setenv("CS_PIPELINE_TODAY", planted.TODAY.isoformat())
    monkeypatch.setenv("CS_PIPELINE_START_DATE", "2025-03-01")  # the run covers exactly its two days
    monkeypatch.setenv("CS_PIPELINE_OUTBOX", str(tmp_path / "outbox"))
    for name in ("CS_PIPELINE_CONFIG_DIR", "CS_PIPELINE_TASK_SINKS", "CS_PIPELINE_SOURCES", "SLACK_BOT_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    code = cli.main(["run", "--data-dir", str(data), "--from", "2025-03-01", "--to", "2025-03-02",
                     "--warehouse", str(tmp_path / "warehouse.duckdb")])
    err = capsys.readouterr().err
    assert code != 0
    assert f"{corrupt}: the file is empty (0 bytes), not a parquet file" in err
    assert len(err.strip().splitlines()) == 1, err
    log = (tmp_path / "logs" / "run-2025-03-01-2025-03-02.log").read_text().splitlines()
    assert any(line.endswith(f" - raw__events - {corrupt}: the file is empty (0 bytes), not a parquet file") for line in log)
