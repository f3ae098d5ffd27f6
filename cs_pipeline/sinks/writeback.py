"""CRM write-back: each account's health score, band, 30-day change and usage flag on its CRM record.

For one day of `analytics.account_health`, every account's values are mapped to CRM fields and
written only when they differ from what was last written successfully (kept per CRM record in
`actions.crm_writeback_state`), so a daily run with unchanged health writes nothing. One account
that fails (unknown id: HTTP 404, a rejected value: HTTP 400) is reported with its reason and tried
again on the next run; the others are written. Credentials that are refused (401/403) or an API
that stays unavailable beyond `retry_max_seconds` fail the whole run with a SinkError.

A `writeback.yaml` (or a `writeback:` section of another YAML file):

    writeback:
      crm:
        type: salesforce                       # or hubspot
        instance_url: https://acme.my.salesforce.com
        token_env: SALESFORCE_ACCESS_TOKEN
        fields:                                # value → CRM field; omit or "" to not write a value
          score: Health_Score__c
          band: Health_Band__c
          score_change_30d: Health_Score_Change_30d__c
          usage_flag: Usage_Flag__c
      crm_id_column: account_id                # column holding the CRM record id
      crm_id_table: analytics.account_health   # or another table with account_id and that column
      usage_flags:                             # first match wins; none: `no_usage_flag`
        - {label: Low Usage, column: utilization_rate, below: 0.3}
      score_decimals: 2

    writeback:
      crm:
        type: hubspot
        token_env: HUBSPOT_ACCESS_TOKEN
        fields: {score: cs_health_score, band: cs_health_band,
                 score_change_30d: cs_health_score_change_30d, usage_flag: cs_usage_flag}
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

import polars as pl
from dlt.sources.helpers.rest_client.auth import BearerTokenAuth
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cs_pipeline.logic.config import ConfigError, read_yaml
from cs_pipeline.sinks.base import SinkError, SinkHttp, TaskSink, sink_secret
from cs_pipeline.sinks.crm_ids import CrmIdMapping
from cs_pipeline.sources.http import api_message

STATE_TABLE = "actions.crm_writeback_state"
STATE_DDL = (
    "CREATE SCHEMA IF NOT EXISTS actions",
    f"""CREATE TABLE IF NOT EXISTS {STATE_TABLE} (
        target VARCHAR, crm_id VARCHAR, account_id VARCHAR, payload VARCHAR, partition_date DATE,
        written_at TIMESTAMP, PRIMARY KEY (target, crm_id))""",
)
VALUES = ("score", "band", "score_change_30d", "usage_flag")


# --- configuration ---------------------------------------------------------------------------------


class UsageFlag(BaseModel):
    """A usage flag: `label` when `column` of account_health is below `below` (and/or at least `at_least`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str
    column: str = "utilization_rate"
    below: float | None = None
    at_least: float | None = None

    def applies(self, row: dict[str, Any]) -> bool:
        value = row.get(self.column)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return False
        if self.below is not None and not value < self.below:
            return False
        if self.at_least is not None and not value >= self.at_least:
            return False
        return self.below is not None or self.at_least is not None


@dataclass(frozen=True)
class AccountUpdate:
    account_id: str
    crm_id: str
    payload: dict[str, Any]  # CRM field → value


@dataclass(frozen=True)
class WriteOutcome:
    crm_id: str
    ok: bool
    reason: str = ""


class CrmWriter(TaskSink):
    """Base of the account writers: the HTTP settings of sinks, and the field mapping.

    `fields`: value (score, band, score_change_30d, usage_flag) → CRM field name; a value mapped to
    an empty name is not written."""

    fields: dict[str, str] = Field(default_factory=dict)

    @field_validator("fields")
    @classmethod
    def _known_values(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(VALUES))
        if unknown:
            raise ValueError(f"unknown value(s) {', '.join(unknown)}: choose among {', '.join(VALUES)}")
        return value

    @property
    def target(self) -> str:
        """Names the CRM written to; the state of another target is not reused."""
        raise NotImplementedError

    def payload(self, values: dict[str, Any]) -> dict[str, Any]:
        return {crm: self.encode(values.get(name)) for name, crm in self.fields.items() if crm}

    def encode(self, value: Any) -> Any:
        return value

    def write(self, updates: list[AccountUpdate]) -> list[WriteOutcome]:
        raise NotImplementedError


_PER_ROW_STATUSES = tuple(s for s in range(400, 500) if s not in (401, 403, 429))


class SalesforceAccountWriter(CrmWriter):
    """`PATCH /services/data/{api_version}/sobjects/{object}/{id}` per account (204; 404 NOT_FOUND
    or 400 recorded for that account). Numbers are sent as numbers, no flag as null."""

    type: Literal["salesforce"] = "salesforce"
    instance_url: str = Field(description="the org's URL, e.g. https://acme.my.salesforce.com")
    token_env: str = Field(description="environment variable holding the OAuth access token")
    api_version: str = Field("v61.0", description="REST API version")
    object: str = Field("Account", description="the sObject holding accounts")
    fields: dict[str, str] = Field(
        default_factory=lambda: {
            "score": "Health_Score__c",
            "band": "Health_Band__c",
            "score_change_30d": "Health_Score_Change_30d__c",
            "usage_flag": "Usage_Flag__c",
        },
        description="value → Account field (API name)",
    )

    @property
    def target(self) -> str:
        return f"salesforce:{self.instance_url.rstrip('/')}/{self.object}"

    def write(self, updates: list[AccountUpdate]) -> list[WriteOutcome]:
        if not updates:
            return []
        token = sink_secret(self.token_env, "salesforce write-back", "token_env")
        http = self._http(
            "salesforce write-back",
            self.instance_url,
            BearerTokenAuth(token),
            f"the OAuth access token in environment variable {self.token_env} (setting `token_env`)",
            [token],
        )
        outcomes = []
        with http:
            for update in updates:
                path = f"/services/data/{self.api_version}/sobjects/{self.object}/{quote(update.crm_id, safe='')}"
                response = http.request("PATCH", path, json_body=update.payload, allow=_PER_ROW_STATUSES)
                if response.status_code < 300:
                    outcomes.append(WriteOutcome(update.crm_id, True))
                else:
                    reason = http.api.redact(f"HTTP {response.status_code}: {api_message(response)}")
                    outcomes.append(WriteOutcome(update.crm_id, False, reason))
        return outcomes


class HubSpotCompanyWriter(CrmWriter):
    """`POST /crm/v3/objects/companies/batch/update` in batches of `batch_size` (≤ 100). Errors
    naming ids (`context.ids`, in a 207 answer or a rejected batch) are recorded for those
    companies and the rest of a rejected batch is sent again. Values are sent as strings, no flag
    as an empty string (which clears the property)."""

    type: Literal["hubspot"] = "hubspot"
    token_env: str = Field(description="environment variable holding the private-app access token")
    base_url: str = Field("https://api.hubapi.com", description="API base URL")
    batch_size: int = Field(100, ge=1, le=100, description="companies per batch request")
    fields: dict[str, str] = Field(
        default_factory=lambda: {
            "score": "cs_health_score",
            "band": "cs_health_band",
            "score_change_30d": "cs_health_score_change_30d",
            "usage_flag": "cs_usage_flag",
        },
        description="value → company property (internal name)",
    )

    @property
    def target(self) -> str:
        return f"hubspot:{self.base_url.rstrip('/')}/companies"

    def encode(self, value: Any) -> Any:
        return "" if value is None else str(value)

    def write(self, updates: list[AccountUpdate]) -> list[WriteOutcome]:
        if not updates:
            return []
        token = sink_secret(self.token_env, "hubspot write-back", "token_env")
        http = self._http(
            "hubspot write-back",
            self.base_url,
            BearerTokenAuth(token),
            f"the private-app token in environment variable {self.token_env} (setting `token_env`)",
            [token],
        )
        outcomes: dict[str, WriteOutcome] = {}
        with http:
            for start in range(0, len(updates), self.batch_size):
                self._batch(http, updates[start : start + self.batch_size], outcomes)
        return [outcomes[u.crm_id] for u in updates]

    def _batch(self, http: SinkHttp, batch: list[AccountUpdate], outcomes: dict[str, WriteOutcome]) -> None:
        pending = list(batch)
        for _ in range(2):  # a rejected batch naming ids is sent once more without them
            if not pending:
                return
            inputs = [{"id": u.crm_id, "properties": u.payload} for u in pending]
            response = http.request(
                "POST", "/crm/v3/objects/companies/batch/update", json_body={"inputs": inputs}, allow=_PER_ROW_STATUSES
            )
            body = http.json(response) or {}
            errors = body.get("errors") or ([] if response.status_code < 300 else [body])
            failed = _failed_ids(errors, http)
            if response.status_code < 300:
                written = {str(r.get("id")) for r in body.get("results") or []}
                for u in pending:
                    if u.crm_id in failed:
                        outcomes[u.crm_id] = WriteOutcome(u.crm_id, False, failed[u.crm_id])
                    elif u.crm_id in written or not failed:
                        outcomes[u.crm_id] = WriteOutcome(u.crm_id, True)
                    else:
                        outcomes[u.crm_id] = WriteOutcome(u.crm_id, False, "not in the answer's results")
                return
            named = {u.crm_id for u in pending} & set(failed)
            if not named:  # the whole batch was refused for a reason that names no company
                reason = http.api.redact(f"HTTP {response.status_code}: {api_message(response)}")
                for u in pending:
                    outcomes[u.crm_id] = WriteOutcome(u.crm_id, False, reason)
                return
            for crm_id in named:
                outcomes[crm_id] = WriteOutcome(crm_id, False, failed[crm_id])
            pending = [u for u in pending if u.crm_id not in named]
        for u in pending:
            outcomes.setdefault(u.crm_id, WriteOutcome(u.crm_id, False, "batch rejected twice"))


def _failed_ids(errors: Iterable[dict[str, Any]], http: SinkHttp) -> dict[str, str]:
    failed: dict[str, str] = {}
    for error in errors:
        if not isinstance(error, dict):
            continue
        reason = http.api.redact(": ".join(str(p) for p in (error.get("category"), error.get("message")) if p))
        for crm_id in (error.get("context") or {}).get("ids") or []:
            failed[str(crm_id)] = reason
    return failed


CrmWriterConfig = Annotated[SalesforceAccountWriter | HubSpotCompanyWriter, Field(discriminator="type")]


class WritebackConfig(CrmIdMapping):
    """What the `crm_writeback` asset writes, and where.

    crm: the CRM writer (`type: salesforce | hubspot`, see SalesforceAccountWriter, HubSpotCompanyWriter);
        without it nothing is written back and the file only says where the CRM ids are.
    crm_id_column: the column holding each account's CRM record id (default: account_id is the CRM id).
    crm_id_table: where that column is: a table with `account_id` and `crm_id_column`
        (default analytics.account_health itself, e.g. marts.dim_accounts otherwise).
        This mapping (`CrmIdMapping`) is also the one of the task sinks and the message links.
    usage_flags: flags by a usage column's value, first match wins (default: `Low Usage` when
        utilization_rate < 0.3).
    no_usage_flag: the flag of an account that matches none (default none: the field is cleared).
    score_decimals: decimals of score and score_change_30d as written (a change below them is no change).
    enabled: false leaves the CRM alone (the asset reports that it skipped).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    crm: CrmWriterConfig | None = None
    usage_flags: tuple[UsageFlag, ...] = (UsageFlag(label="Low Usage", column="utilization_rate", below=0.3),)
    no_usage_flag: str | None = None
    score_decimals: int = Field(2, ge=0, le=6)
    enabled: bool = True

    @classmethod
    def load(cls, path: str | Path) -> WritebackConfig:
        """From a YAML file: the mapping itself, or its `writeback:` section."""
        path = Path(path)
        try:
            data = read_yaml(path) or {}  # the limits of every config file: size, no aliases, depth
        except ConfigError as error:
            raise SinkError(f"write-back: {error}") from None
        if isinstance(data, dict) and "writeback" in data:
            data = data["writeback"]
        return cls.parse(data, str(path))

    @classmethod
    def parse(cls, data: Any, where: str = "writeback") -> WritebackConfig:
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'writeback'}: {e['msg']}" for e in error.errors(include_url=False)
            )
            raise SinkError(f"write-back configuration in {where}: {problems}") from None


# --- the run ------------------------------------------------------------------------------------------


@dataclass
class WritebackReport:
    day: dt.date | None
    target: str
    written: list[AccountUpdate] = field(default_factory=list)
    unchanged: int = 0
    no_crm_id: list[str] = field(default_factory=list)  # account ids without a CRM id
    failed: list[tuple[AccountUpdate, str]] = field(default_factory=list)

    def failures_frame(self) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "account_id": [u.account_id for u, _ in self.failed],
                "crm_id": [u.crm_id for u, _ in self.failed],
                "reason": [r for _, r in self.failed],
            },
            schema={"account_id": pl.String, "crm_id": pl.String, "reason": pl.String},
        )


def ensure_state_table(con) -> None:
    for statement in STATE_DDL:
        con.execute(statement)


def _round(value: Any, decimals: int) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return round(float(value), decimals)


def account_values(con, config: WritebackConfig, day: dt.date) -> list[tuple[str, str | None, dict[str, Any]]]:
    """(account_id, crm id, {score, band, score_change_30d, usage_flag}) per account on `day`."""
    rows = con.execute("SELECT * FROM analytics.account_health WHERE partition_date = ? ORDER BY account_id", [day])
    names = [d[0] for d in rows.description]
    health = [dict(zip(names, r)) for r in rows.fetchall()]
    crm_ids = config.lookup(con, [str(row["account_id"]) for row in health], day)
    out = []
    for row in health:
        flag = next((f.label for f in config.usage_flags if f.applies(row)), config.no_usage_flag)
        values = {
            "score": _round(row.get("score"), config.score_decimals),
            "band": row.get("band"),
            "score_change_30d": _round(row.get("score_change_30d"), config.score_decimals),
            "usage_flag": flag,
        }
        crm_id = crm_ids.get(str(row["account_id"]))
        out.append((str(row["account_id"]), crm_id or None, values))
    return out


def _canonical(payload: dict[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True, default=str)


def plan(con, config: WritebackConfig, day: dt.date) -> tuple[list[AccountUpdate], WritebackReport]:
    """The updates whose payload differs from the last successful write, and the report so far."""
    if config.crm is None:
        raise SinkError("write-back: the file names no `crm` to write to")
    ensure_state_table(con)
    report = WritebackReport(day=day, target=config.crm.target)
    last = dict(
        con.execute(f"SELECT crm_id, payload FROM {STATE_TABLE} WHERE target = ?", [config.crm.target]).fetchall()
    )
    updates = []
    for account_id, crm_id, values in account_values(con, config, day):
        if not crm_id:
            report.no_crm_id.append(account_id)
            continue
        payload = config.crm.payload(values)
        if last.get(crm_id) == _canonical(payload):
            report.unchanged += 1
            continue
        updates.append(AccountUpdate(account_id, crm_id, payload))
    return updates, report


def record(con, config: WritebackConfig, day: dt.date, written: list[AccountUpdate]) -> None:
    """Keep what was written, so that the next run only writes what changed."""
    ensure_state_table(con)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    rows = [(config.crm.target, u.crm_id, u.account_id, _canonical(u.payload), day, now) for u in written]
    if rows:
        con.executemany(f"INSERT OR REPLACE INTO {STATE_TABLE} VALUES (?, ?, ?, ?, ?, ?)", rows)


def run_writeback(connect: Callable[[], AbstractContextManager[Any]], config: WritebackConfig, day: dt.date) -> WritebackReport:
    """Plan from the warehouse, write over HTTP with the warehouse closed, record what succeeded.

    `connect()` opens the warehouse (e.g. `WarehouseResource.connect`)."""
    with connect() as con:
        updates, report = plan(con, config, day)
    by_id = {u.crm_id: u for u in updates}
    for outcome in config.crm.write(updates):
        update = by_id[outcome.crm_id]
        if outcome.ok:
            report.written.append(update)
        else:
            report.failed.append((update, outcome.reason))
    if report.written:
        with connect() as con:
            record(con, config, day, report.written)
    return report
