"""The input contract's rules: typed rows pass, broken rows are rejected with a reason, nothing is lost."""

import datetime as dt
import gzip

import polars as pl
import pytest

from cs_pipeline.logic.contract import (
    ENTITIES,
    SourceFileError,
    normalise_timestamp,
    parse_timestamps,
    validate,
)
from cs_pipeline.logic.exports import _read_jsonl_at_once, _read_jsonl_by_line, read_entity_file, read_event_file


def test_timestamps_in_any_iso_8601_form_become_naive_utc():
    frame = pl.DataFrame({
        "event_id": ["a", "b", "c", "d", "e"],
        "account_id": ["x"] * 5,
        "user_id": ["u"] * 5,
        "event": ["login"] * 5,
        "occurred_at": ["2025-03-10T08:00:00Z", "2025-03-10T10:00:00+02:00", "2025-03-10 08:00:00", "2025-03-10T08:00", "2025-03-10T08:00:00.250-01:00"],
    })
    result = validate("events", frame, day=dt.date(2025, 3, 10))
    assert result.rejected.height == 0
    assert result.valid["occurred_at"].to_list() == [
        dt.datetime(2025, 3, 10, 8), dt.datetime(2025, 3, 10, 8), dt.datetime(2025, 3, 10, 8),
        dt.datetime(2025, 3, 10, 8), dt.datetime(2025, 3, 10, 9, 0, 0, 250000),
    ]


def test_the_fast_timestamp_path_parses_exactly_what_the_normalising_one_does():
    text = pl.Series([
        "2024-05-11T09:15:47Z", "2024-05-11T09:15:47.123456Z", "2024-05-11T09:15:47.1Z", "2024-05-11T9:15:47Z",
        " 2024-05-11T09:15:47Z", "2024-05-11T09:15:47Z ", "2024-05-11 09:15:47Z", "2024-05-11T09:15Z",
        "2024-05-11T09:15:47z", "2024-05-11T09:15:47+02:00", "2024-05-11", "2024-5-1T09:15:47Z",
        "2024-05-11T09:15:60Z", "2024-02-30T09:15:47Z", "2024-05-11T09:15:47.1234567891Z", "x", None, "",
        "2024-05-11T24:00:00Z", "+2024-05-11T09:15:47Z", "2024-05-11T09:15:47.Z", "02024-05-11T09:15:47Z",
    ])
    expected = pl.select(normalise_timestamp(pl.lit(text))).to_series()
    assert parse_timestamps(text).to_list() == expected.to_list()
    assert expected.null_count() == 7  # the unparseable ones stay null on both paths


def test_json_lines_read_in_one_pass_or_line_by_line_give_the_same_rows(tmp_path):
    data = (
        b'{"ticket_id": "t1", "account_id": "a", "csat": 5, "reopened": true, "subject": null}\n'
        b'{"subject": "s", "account_id": "b", "ticket_id": "t2", "ticket_id": "again", "reopened": false}\n'
    )
    at_once = _read_jsonl_at_once(data)
    assert at_once is not None and at_once.equals(_read_jsonl_by_line(tmp_path / "t.jsonl", data))
    assert at_once["_line"].to_list() == [1, 2]
    assert at_once["ticket_id"].to_list() == ["t1", "t2"]  # a repeated key keeps its first value
    assert at_once["csat"].to_list() == ["5", None] and at_once["reopened"].to_list() == ["true", "false"]
    # What one pass could not give exactly (line numbers, the text of decimals and nested values,
    # a reason per broken line) goes line by line.
    for odd in (b'{"a": 1}\n\n{"a": 2}\n', b'{"a": 1.5}\n', b'{"a": {"b": 1}}\n', b'{"a": 1}\n[1]\n', b'{"a": 1}\n{not json\n'):
        assert _read_jsonl_at_once(odd) is None, odd
    assert _read_jsonl_by_line(tmp_path / "t.jsonl", b'{"a": 1}\n\n{"a": 2.0}\n')["_line"].to_list() == [1, 3]


def test_every_broken_rule_is_named_and_good_rows_are_kept():
    frame = pl.DataFrame({
        "account_id": ["a1", "a2", "a1", None],
        "name": ["Acme", "", "Again", "Nameless"],
        "segment": ["smb", "gold", "smb", "smb"],
        "owner_email": [None, None, None, None],
        "plan": ["pro"] * 4,
        "licenses": ["10", "-3", "2.5", "4"],
        "status": ["active", "active", "paused", "trial"],
        "created_at": ["2025-01-01", "yesterday", None, None],
    })
    result = validate("accounts", frame)
    assert result.valid["account_id"].to_list() == ["a1"]
    assert result.valid["licenses"].dtype == pl.Int64
    reasons = dict(zip(result.rejected["line"].to_list(), result.rejected["reason"].to_list()))
    assert reasons[2] == (
        "name is required; segment: 'gold' is not one of enterprise, mid_market, smb; "
        "licenses: -3 is below 0; created_at: 'yesterday' is not an ISO-8601 timestamp"
    )
    assert "licenses: '2.5' is not an integer" in reasons[3] and "status: 'paused'" in reasons[3]
    assert reasons[4] == "account_id is required"
    assert result.valid.height + result.rejected.height == frame.height


def test_a_duplicate_key_is_rejected_naming_the_first_line():
    frame = pl.DataFrame({"response_id": ["r1", "r1"], "account_id": ["a", "a"], "user_id": [None, None],
                          "score": ["9", "3"], "comment": [None, None], "submitted_at": ["2025-01-01T00:00:00Z"] * 2})
    result = validate("nps_responses", frame)
    assert result.valid["score"].to_list() == [9]
    assert result.rejected["reason"].to_list() == ["duplicate response_id 'r1' (first at line 1)"]


def test_contracts_need_a_known_account_and_an_end_after_the_start():
    frame = pl.DataFrame({"contract_id": ["c1", "c2", "c3"], "account_id": ["a", "zz", "a"],
                          "start_date": ["2025-01-01"] * 3, "end_date": ["2025-12-31", "2025-12-31", "2024-12-31"], "arr": ["100.5", "1", "1"]})
    result = validate("contracts", frame, known_accounts=["a"])
    assert result.valid["contract_id"].to_list() == ["c1"] and result.valid["arr"].to_list() == [100.5]
    assert result.rejected["reason"].to_list() == ["account_id: 'zz' does not exist in accounts", "end_date is before start_date"]


def test_a_redelivered_event_counts_once_and_one_outside_its_day_is_rejected():
    frame = pl.DataFrame({"event_id": ["e1", "e1", "e2"], "account_id": ["a"] * 3, "user_id": ["u"] * 3,
                          "event": ["login"] * 3, "occurred_at": ["2025-03-10T08:00:00Z", "2025-03-10T08:00:00Z", "2025-03-11T00:00:00Z"]})
    result = validate("events", frame, day=dt.date(2025, 3, 10))
    assert result.valid["event_id"].to_list() == ["e1"] and result.duplicates_dropped == 1
    assert "outside its folder's day 2025-03-10" in result.rejected["reason"][0]


def test_a_broken_json_line_is_rejected_and_the_rest_of_the_file_is_used(tmp_path):
    (tmp_path / "tickets.jsonl").write_text(
        '{"ticket_id": "t1", "account_id": "a", "created_at": "2025-01-01T00:00:00Z", "updated_at": "2025-01-02T00:00:00Z", "status": "open", "priority": "high", "subject": "x", "csat": 5}\n'
        "{not json\n"
    )
    result = validate("tickets", read_entity_file(tmp_path, ENTITIES["tickets"]))
    assert result.valid["ticket_id"].to_list() == ["t1"] and result.valid["csat"].to_list() == [5]
    assert result.rejected["line"].to_list() == [2] and result.rejected["reason"][0].startswith("invalid JSON")
    assert result.rejected["record"][0] == "{not json"


def test_files_that_cannot_be_used_fail_with_the_file_and_the_cause(tmp_path):
    with pytest.raises(SourceFileError, match="accounts.csv: file not found"):
        read_entity_file(tmp_path, ENTITIES["accounts"])
    (tmp_path / "accounts.csv").write_text("account_id,name\na1,Acme\n")
    with pytest.raises(SourceFileError, match="accounts.csv: missing required column.*segment"):
        read_entity_file(tmp_path, ENTITIES["accounts"])
    assert read_entity_file(tmp_path, ENTITIES["engagements"]) is None  # optional export
    broken = tmp_path / "part-0.jsonl.gz"
    broken.write_bytes(b"not gzip")
    with pytest.raises(SourceFileError, match="part-0.jsonl.gz: cannot be read"):
        read_event_file(broken)


def test_gzipped_json_lines_events_are_read(tmp_path):
    path = tmp_path / "part-0.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        handle.write('{"event_id": "e1", "account_id": "a", "user_id": "u", "event": "login", "occurred_at": "2025-03-10T08:00:00Z"}\n')
    result = validate("events", read_event_file(path), day=dt.date(2025, 3, 10))
    assert result.valid.height == 1 and result.valid["source_file"][0] == str(path)


def test_typed_events_as_parquet_gives_them_are_checked_with_the_same_reasons():
    # Parquet and databases give typed columns; ids may be blank in any Unicode whitespace.
    frame = pl.DataFrame({
        "event_id": ["e1", "\u00a0", "e3", "e1", "e4"],
        "account_id": ["a", "a", " ", "a", "a"],
        "user_id": ["u", "u", "u", "u", "\t"],
        "event": ["login"] * 5,
        "occurred_at": [dt.datetime(2025, 3, 10, 8), dt.datetime(2025, 3, 10, 9), dt.datetime(2025, 3, 11, 1),
                        dt.datetime(2025, 3, 10, 8), None],
    }).with_columns(pl.col("occurred_at").dt.replace_time_zone("Europe/Paris"))
    result = validate("events", frame, day=dt.date(2025, 3, 10))
    assert result.valid["event_id"].to_list() == ["e1"] and result.duplicates_dropped == 1
    assert result.valid["occurred_at"].to_list() == [dt.datetime(2025, 3, 10, 7)]
    assert dict(zip(result.rejected["line"].to_list(), result.rejected["reason"].to_list())) == {
        2: "event_id is required",
        3: "account_id is required; occurred_at: 2025-03-11 00:00:00.000000 is outside its folder's day 2025-03-10",
        5: "occurred_at is required",
    }
