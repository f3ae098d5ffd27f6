"""Where things live and what day it is: the one place that reads non-secret settings.

Every setting has a default that works from a clone of the repository, and an environment
variable to change it. Secrets never pass through here: they are `dagster.EnvVar`s on resources.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
SHIPPED_CONFIG_DIR = PACKAGE_DIR / "config"
PROJECT_DIR = PACKAGE_DIR.parent
DBT_PROJECT_DIR = PROJECT_DIR / "dbt"

DEFAULT_WAREHOUSE = "data/warehouse.duckdb"
DEFAULT_DATA_DIR = "data/demo"
DEFAULT_START_DATE = "2025-01-01"
DEFAULT_LIVE_WINDOW_DAYS = 2


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def warehouse_path() -> Path:
    """The DuckDB file (`CS_PIPELINE_WAREHOUSE`, default `data/warehouse.duckdb`)."""
    return Path(_env("CS_PIPELINE_WAREHOUSE", DEFAULT_WAREHOUSE)).resolve()


def data_dir() -> Path:
    """The `files` source directory (`CS_PIPELINE_DATA_DIR`, default `data/demo`)."""
    return Path(_env("CS_PIPELINE_DATA_DIR", DEFAULT_DATA_DIR)).resolve()


def sources_file() -> str:
    """Optional sources.yaml naming a connector per entity (`CS_PIPELINE_SOURCES`); empty: files only."""
    value = _env("CS_PIPELINE_SOURCES", "")
    return str(Path(value).resolve()) if value else ""


def writeback_file() -> str:
    """Optional YAML configuring the CRM write-back (`CS_PIPELINE_WRITEBACK`); empty: no write-back."""
    value = _env("CS_PIPELINE_WRITEBACK", "")
    return str(Path(value).resolve()) if value else ""


def task_sinks_file() -> str:
    """Optional YAML mapping rules to task sinks (`CS_PIPELINE_TASK_SINKS`); empty: tasks stay in the warehouse."""
    value = _env("CS_PIPELINE_TASK_SINKS", "")
    return str(Path(value).resolve()) if value else ""


def config_dir() -> Path:
    """Health model and rules (`CS_PIPELINE_CONFIG_DIR`, default: the shipped ones)."""
    return Path(_env("CS_PIPELINE_CONFIG_DIR", str(SHIPPED_CONFIG_DIR))).resolve()


def outbox_dir() -> Path:
    """Where Slack messages are written when no `SLACK_BOT_TOKEN` is set."""
    default = str(warehouse_path().parent / "outbox")
    return Path(_env("CS_PIPELINE_OUTBOX", default)).resolve()


def webserver_url() -> str:
    """The Dagster UI's address for links in messages and output (`DAGSTER_WEBSERVER_URL`, default localhost)."""
    return _env("DAGSTER_WEBSERVER_URL", "http://localhost:3000").rstrip("/")


def partitions_start_date() -> str:
    """First daily partition: `CS_PIPELINE_START_DATE` (`YYYY-MM-DD`), else the data's first day,
    the earliest `events/date=YYYY-MM-DD` folder of the files source (`data_dir()`), else
    `DEFAULT_START_DATE` (events from another connector and no events folder: set the variable)."""
    value = _env("CS_PIPELINE_START_DATE", "")
    if value:
        parse_date(value, "CS_PIPELINE_START_DATE")
        return value
    first = first_events_day(data_dir())
    return first.isoformat() if first else DEFAULT_START_DATE


def first_events_day(data: Path) -> dt.date | None:
    """The earliest day with an `events/date=YYYY-MM-DD` folder under `data`; None without one.
    Folders with another name are left to the ingestion, which names them."""
    events = data / "events"
    if not events.is_dir():
        return None
    found = []
    for entry in os.scandir(events):
        if entry.is_dir() and entry.name.startswith("date="):
            try:
                found.append(dt.date.fromisoformat(entry.name.removeprefix("date=")))
            except ValueError:
                continue
    return min(found, default=None)


def live_window_days() -> int:
    value = _env("CS_PIPELINE_LIVE_WINDOW_DAYS", str(DEFAULT_LIVE_WINDOW_DAYS))
    try:
        days = int(value)
    except ValueError:
        raise ValueError(f"CS_PIPELINE_LIVE_WINDOW_DAYS must be a whole number of days, got {value!r}") from None
    if days < 0:
        raise ValueError(f"CS_PIPELINE_LIVE_WINDOW_DAYS must be >= 0, got {days}")
    return days


def today() -> dt.date:
    """The one clock: the real UTC date, unless `CS_PIPELINE_TODAY=YYYY-MM-DD` sets it."""
    value = os.environ.get("CS_PIPELINE_TODAY", "").strip()
    if value:
        return parse_date(value, "CS_PIPELINE_TODAY")
    return dt.datetime.now(dt.timezone.utc).date()


def load_time() -> dt.datetime:
    """When a snapshot load takes effect (the validity start of the versions it records), naive
    UTC: now, or the start of the day `CS_PIPELINE_TODAY` names, so a replay loads each version
    "on" its day."""
    if os.environ.get("CS_PIPELINE_TODAY", "").strip():
        return dt.datetime.combine(today(), dt.time())
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def is_live(partition_date: dt.date) -> bool:
    """A partition is live when it is at most `live_window_days` before today."""
    return partition_date >= today() - dt.timedelta(days=live_window_days())


def parse_date(value: str, what: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{what} must be a date as YYYY-MM-DD, got {value!r}") from None


def max_rejected_share() -> float:
    """Share of rejected rows above which an ingestion asset check fails (default 0.05)."""
    value = _env("CS_PIPELINE_MAX_REJECTED_SHARE", "0.05")
    try:
        share = float(value)
    except ValueError:
        raise ValueError(f"CS_PIPELINE_MAX_REJECTED_SHARE must be a number between 0 and 1, got {value!r}") from None
    if not 0 <= share <= 1:
        raise ValueError(f"CS_PIPELINE_MAX_REJECTED_SHARE must be between 0 and 1, got {share}")
    return share


def reload_unchanged_exports() -> bool:
    """Reload snapshot exports even when unchanged since their last load (`CS_PIPELINE_RELOAD_UNCHANGED_EXPORTS`, default false)."""
    value = _env("CS_PIPELINE_RELOAD_UNCHANGED_EXPORTS", "false").lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError(f"CS_PIPELINE_RELOAD_UNCHANGED_EXPORTS must be true or false, got {value!r}")
    return value in ("true", "1", "yes")


def schedule_hour() -> int:
    """UTC hour at which the daily schedule runs yesterday's partition (`CS_PIPELINE_SCHEDULE_HOUR`, default 6)."""
    value = _env("CS_PIPELINE_SCHEDULE_HOUR", "6")
    if not value.isdigit() or not 0 <= int(value) <= 23:
        raise ValueError(f"CS_PIPELINE_SCHEDULE_HOUR must be an hour from 0 to 23, got {value!r}")
    return int(value)


def dispatch_retry_max_minutes() -> int:
    """The longest wait between retries of dispatch runs that keep failing
    (`CS_PIPELINE_DISPATCH_RETRY_MAX_MINUTES`, default 60; 0: retry on every sensor tick)."""
    value = _env("CS_PIPELINE_DISPATCH_RETRY_MAX_MINUTES", "60")
    if not value.isdigit():
        raise ValueError(f"CS_PIPELINE_DISPATCH_RETRY_MAX_MINUTES must be a whole number of minutes >= 0, got {value!r}")
    return int(value)


SEVERITIES = ("info", "warning", "critical")


def digest_severities() -> tuple[str, ...]:
    """Severities whose new alerts go into one digest per CSM instead of a message each
    (`CS_PIPELINE_DIGEST_SEVERITIES`, e.g. `info,warning`; unset: none, every alert alone)."""
    if _env("CS_PIPELINE_DIGEST_INFO_ALERTS", ""):
        raise ValueError("CS_PIPELINE_DIGEST_INFO_ALERTS was replaced by CS_PIPELINE_DIGEST_SEVERITIES: "
                         "set CS_PIPELINE_DIGEST_SEVERITIES=info (or unset it) and unset CS_PIPELINE_DIGEST_INFO_ALERTS")
    value = _env("CS_PIPELINE_DIGEST_SEVERITIES", "")
    chosen = [part.strip().lower() for part in value.split(",") if part.strip()]
    unknown = [part for part in chosen if part not in SEVERITIES]
    if unknown:
        raise ValueError(f"CS_PIPELINE_DIGEST_SEVERITIES: unknown severity {unknown[0]!r}; "
                         f"give a comma-separated list of {', '.join(SEVERITIES)}, got {value!r}")
    return tuple(s for s in SEVERITIES if s in chosen)


def max_alerts_per_csm_per_day() -> int | None:
    """Alert messages a CSM gets a day before the rest go to the digest (`CS_PIPELINE_MAX_ALERTS_PER_CSM_PER_DAY`; unset: no cap)."""
    value = _env("CS_PIPELINE_MAX_ALERTS_PER_CSM_PER_DAY", "")
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"CS_PIPELINE_MAX_ALERTS_PER_CSM_PER_DAY must be a whole number >= 1, got {value!r}")
    return int(value)


def crm_record_url() -> str | None:
    """The link to an account's CRM record in alert messages (`CS_PIPELINE_CRM_RECORD_URL`, unset: no link):
    a URL with `{crm_id}` where the account's CRM id goes, e.g.
    `https://acme.lightning.force.com/lightning/r/Account/{crm_id}/view`."""
    value = _env("CS_PIPELINE_CRM_RECORD_URL", "")
    if not value:
        return None
    if not value.startswith(("http://", "https://")) or "{crm_id}" not in value:
        raise ValueError(
            "CS_PIPELINE_CRM_RECORD_URL must be an http(s) URL with {crm_id} where the account's CRM id goes, "
            f"e.g. https://acme.lightning.force.com/lightning/r/Account/{{crm_id}}/view; got {value!r}"
        )
    return value


def actions_url() -> str:
    """The actions store (`CS_PIPELINE_ACTIONS_URL`, a SQLAlchemy URL such as
    `postgresql://cs@db/cs_actions`); unset: a SQLite file beside the warehouse
    (`data/warehouse.duckdb` -> `data/warehouse.actions.sqlite`)."""
    warehouse = warehouse_path()
    return _env("CS_PIPELINE_ACTIONS_URL", "") or f"sqlite:///{warehouse.with_name(warehouse.stem + '.actions.sqlite').resolve()}"


def dispatch_settle_seconds() -> float:
    """How long dispatch waits before looking up a post whose answer was lost (`CS_PIPELINE_SETTLE_SECONDS`, 2)."""
    value = _env("CS_PIPELINE_SETTLE_SECONDS", "2")
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 60:
        raise ValueError(f"CS_PIPELINE_SETTLE_SECONDS must be a number of seconds from 0 to 60, got {value!r}")
    return seconds


def untouched_days() -> int:
    """Days without a CSM touch after which the portfolio map marks an account (`CS_PIPELINE_UNTOUCHED_DAYS`, default 30)."""
    value = _env("CS_PIPELINE_UNTOUCHED_DAYS", "30")
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"CS_PIPELINE_UNTOUCHED_DAYS must be a whole number of days >= 1, got {value!r}")
    return int(value)


def reports_dir() -> Path:
    """Where the portfolio report is written (`CS_PIPELINE_REPORTS_DIR`, default: reports/ beside the warehouse)."""
    return Path(_env("CS_PIPELINE_REPORTS_DIR", str(warehouse_path().parent / "reports"))).resolve()


def weekly_digest_file() -> str:
    """Optional YAML naming the weekly digest's audiences (`CS_PIPELINE_WEEKLY_DIGEST`); empty: one, `all`, in #cs-leads."""
    value = _env("CS_PIPELINE_WEEKLY_DIGEST", "")
    return str(Path(value).resolve()) if value else ""
