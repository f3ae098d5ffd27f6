"""The one account → CRM id mapping: where it reads the ids, and the write-back file that holds it."""

import datetime as dt

import duckdb
import pytest

from cs_pipeline.assets.crm_writeback import CrmWritebackResource
from cs_pipeline.sinks.base import SinkError
from cs_pipeline.sinks.crm_ids import CrmIdMapping


@pytest.fixture
def con():
    with duckdb.connect() as con:
        con.execute("CREATE SCHEMA analytics")
        con.execute("CREATE TABLE analytics.account_health (partition_date DATE, account_id VARCHAR, crm_ref VARCHAR)")
        con.execute("""INSERT INTO analytics.account_health VALUES
            ('2025-04-29', 'acc_1', 'old-1'), ('2025-04-30', 'acc_1', 'new-1'),
            ('2025-04-29', 'acc_2', 'id-2'), ('2025-04-30', 'acc_2', NULL), ('2025-04-30', 'acc_3', '  ')""")
        con.execute("CREATE TABLE main.crm (account_id VARCHAR, sf_id VARCHAR)")
        con.execute("INSERT INTO main.crm VALUES ('acc_1', ' 001A '), ('acc_2', '')")
        yield con


def test_by_default_the_account_id_is_the_crm_id(con):
    assert CrmIdMapping().lookup(con, ["acc_2", "acc_1", "acc_1"]) == {"acc_1": "acc_1", "acc_2": "acc_2"}
    assert CrmIdMapping().lookup(con, []) == {}


def test_ids_from_another_table_trimmed_and_empty_or_missing_as_none(con):
    mapping = CrmIdMapping(crm_id_column="sf_id", crm_id_table="main.crm")
    assert mapping.lookup(con, ["acc_1", "acc_2", "acc_9"]) == {"acc_1": "001A", "acc_2": None, "acc_9": None}
    assert mapping.source == "main.crm.sf_id"


def test_ids_from_raw_accounts_are_those_of_the_current_versions(con):
    """raw.accounts keeps every version of an account (dlt scd2): the current one holds the id."""
    con.execute("CREATE SCHEMA raw")
    con.execute("CREATE TABLE raw.accounts (account_id VARCHAR, sf_id VARCHAR, _dlt_valid_to TIMESTAMPTZ)")
    con.execute("INSERT INTO raw.accounts VALUES ('acc_1', 'retired', '2025-03-01 00:00:00+00'), ('acc_1', '001A', NULL)")
    assert CrmIdMapping(crm_id_column="sf_id", crm_id_table="raw.accounts").lookup(con, ["acc_1"]) == {"acc_1": "001A"}


def test_ids_from_account_health_on_a_day_or_the_latest_row(con):
    mapping = CrmIdMapping(crm_id_column="crm_ref")
    assert mapping.lookup(con, ["acc_1", "acc_2", "acc_3"], dt.date(2025, 4, 29)) == {
        "acc_1": "old-1", "acc_2": "id-2", "acc_3": None}
    assert mapping.lookup(con, ["acc_1", "acc_2", "acc_3"]) == {"acc_1": "new-1", "acc_2": None, "acc_3": None}


def test_names_are_validated_and_an_unreadable_mapping_names_the_settings(con):
    with pytest.raises(ValueError, match="crm_id_table must be schema.table"):
        CrmIdMapping(crm_id_table="main.crm; DROP TABLE x")
    with pytest.raises(ValueError, match="crm_id_column must be a column name"):
        CrmIdMapping(crm_id_column='sf_id"')
    with pytest.raises(SinkError, match=r"^CRM ids: cannot read main.crm.nope \(settings `crm_id_table`, `crm_id_column`"):
        CrmIdMapping(crm_id_column="nope", crm_id_table="main.crm").lookup(con, ["acc_1"])


def test_a_writeback_file_may_hold_only_the_mapping(tmp_path):
    path = tmp_path / "writeback.yaml"
    path.write_text("writeback:\n  crm_id_column: sf_id\n  crm_id_table: main.crm\n")
    resource = CrmWritebackResource(config_file=str(path))
    assert resource.config().crm is None
    assert resource.crm_ids() == CrmIdMapping(crm_id_column="sf_id", crm_id_table="main.crm")
    assert CrmWritebackResource().crm_ids() == CrmIdMapping()
    path.write_text("writeback:\n  crm_id_colum: sf_id\n")
    with pytest.raises(SinkError, match="crm_id_colum"):
        resource.crm_ids()
