"""Each account's CRM record id: the one mapping that the write-back, the task sinks and the
message links share.

By default an account's id is its CRM record id (true when accounts come from the Salesforce or
HubSpot connector). Otherwise the write-back file (`CS_PIPELINE_WRITEBACK`) names where the ids
are, and every user of CRM ids reads them through `CrmIdMapping.lookup`:

    crm_id_column: salesforce_id        # the column holding the CRM record id
    crm_id_table: raw.accounts          # a table with account_id and that column
                                        # (default: analytics.account_health)

An account whose id is empty there has no CRM record: the write-back skips it, its tasks are
created unlinked (with the reason recorded), and its messages carry no CRM link.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, field_validator

from cs_pipeline.sinks.base import SinkError

HEALTH_TABLE = "analytics.account_health"
CRM_ID_PLACEHOLDER = "{crm_id}"


class CrmIdMapping(BaseModel):
    """Where each account's CRM record id is: `crm_id_column` of `crm_id_table`, by account_id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    crm_id_column: str = "account_id"
    crm_id_table: str | None = None

    @field_validator("crm_id_column")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not value.replace("_", "").isalnum():
            raise ValueError(f"crm_id_column must be a column name, got {value!r}")
        return value

    @field_validator("crm_id_table")
    @classmethod
    def _table(cls, value: str | None) -> str | None:
        if value is not None and not all(p.replace("_", "").isalnum() for p in value.split(".")):
            raise ValueError(f"crm_id_table must be schema.table, got {value!r}")
        return value

    @property
    def source(self) -> str:
        """Where the ids are read, for messages: `raw.accounts.salesforce_id`."""
        return f"{self.crm_id_table or HEALTH_TABLE}.{self.crm_id_column}"

    @property
    def is_account_id(self) -> bool:
        """The default: each account's id is its CRM id."""
        return self.crm_id_column == "account_id" and self.crm_id_table is None

    def lookup(self, con, account_ids: Collection[str], day: dt.date | None = None) -> dict[str, str | None]:
        """account_id → CRM id (None when empty) for `account_ids`; an account not found maps to None.

        Without `crm_id_table` the ids are read from analytics.account_health on `day`, or from
        each account's latest row there when `day` is None.
        """
        wanted = sorted({str(a) for a in account_ids})
        if not wanted:
            return {}
        if self.is_account_id:
            return {a: a for a in wanted}
        column = f'"{self.crm_id_column}"'  # a validated identifier; values are parameters
        if self.crm_id_table:
            sql = f"SELECT account_id, {column} FROM {self.crm_id_table} WHERE list_contains(?, account_id)"
            if _keeps_versions(con, self.crm_id_table):  # raw.accounts: its current versions
                sql += " AND _dlt_valid_to IS NULL"
            params: list = [wanted]
        elif day is not None:
            sql = f"SELECT account_id, {column} FROM {HEALTH_TABLE} WHERE list_contains(?, account_id) AND partition_date = ?"
            params = [wanted, day]
        else:
            sql = (
                f"SELECT account_id, {column} FROM {HEALTH_TABLE} WHERE list_contains(?, account_id) "
                "QUALIFY row_number() OVER (PARTITION BY account_id ORDER BY partition_date DESC) = 1"
            )
            params = [wanted]
        try:
            rows = con.execute(sql, params).fetchall()
        except Exception as error:  # noqa: BLE001 - reworded: which setting points at what is missing
            raise SinkError(
                f"CRM ids: cannot read {self.source} (settings `crm_id_table`, `crm_id_column` of the write-back "
                f"file): {str(error).splitlines()[0]}"
            ) from None
        found = {str(a): (None if c is None or str(c).strip() == "" else str(c).strip()) for a, c in rows}
        return {a: found.get(a) for a in wanted}


def _keeps_versions(con, table: str) -> bool:
    """The table keeps every version of its rows (dlt's scd2 merge: raw.accounts)."""
    schema, _, name = table.rpartition(".")
    return bool(con.execute(
        "SELECT count(*) FROM information_schema.columns WHERE table_name = ? AND column_name = '_dlt_valid_to'"
        + (" AND table_schema = ?" if schema else ""),
        [name, schema] if schema else [name],
    ).fetchone()[0])


def record_url(template: str | None, crm_id: str | None) -> str | None:
    """The CRM record link from a template such as
    `https://acme.lightning.force.com/lightning/r/Account/{crm_id}/view`; None without either."""
    if not template or not crm_id:
        return None
    return template.replace(CRM_ID_PLACEHOLDER, quote(crm_id, safe=""))
