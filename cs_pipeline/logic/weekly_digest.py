"""The weekly digest to CS leads: who gets which part of the portfolio, and the message itself.

The audiences file (`CS_PIPELINE_WEEKLY_DIGEST`, YAML) names each audience, its Slack channel
and the accounts it covers, by segment or by CSM (team); without the file, one audience, `all`,
gets every account in `#cs-leads`:

    audiences:
      - name: enterprise
        channel: "#cs-enterprise-leads"
        segments: [enterprise]
      - name: team-tokyo
        channel: "#cs-tokyo"
        owners: [ana@example.com, ben@example.com]
      - name: all
        channel: "#cs-leads"

A bad file is a ConfigError naming the file, the line and the field (logic/config.py).
Pure logic: no Dagster, no Slack.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cs_pipeline.logic.config import load_yaml_model
from cs_pipeline.logic.contract import SEGMENTS
DEFAULT_CHANNEL = "#cs-leads"
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
MAX_LISTED = 10  # accounts listed per section; the rest are counted


class Audience(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="a short id, used in the exactly-once key (week, audience)")
    channel: str = Field(description="a Slack channel: #name or an id")
    segments: list[str] = Field(default_factory=list)
    owners: list[str] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError("use lower-case letters, digits, - and _ (at most 64), e.g. enterprise-leads")
        return value

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str) -> str:
        if not re.fullmatch(r"#[a-z0-9][a-z0-9_-]{0,79}|[CG][A-Z0-9]{8,}", value):
            raise ValueError("a channel is #name (lower case) or a channel id such as C0123456789")
        return value

    @field_validator("segments")
    @classmethod
    def _segments(cls, value: list[str]) -> list[str]:
        unknown = [s for s in value if s not in SEGMENTS]
        if unknown:
            raise ValueError(f"unknown segment {unknown[0]!r}; valid choices: {', '.join(SEGMENTS)}")
        return value

    @field_validator("owners")
    @classmethod
    def _owners(cls, value: list[str]) -> list[str]:
        bad = [o for o in value if "@" not in o]
        if bad:
            raise ValueError(f"{bad[0]!r} is not an email address")
        return [o.strip().lower() for o in value]

    def covers(self) -> pl.Expr:
        """The accounts of this audience, as a filter on frames with segment and owner_email."""
        condition = pl.lit(True)
        if self.segments:
            condition = condition & pl.col("segment").is_in(self.segments)
        if self.owners:
            condition = condition & pl.col("owner_email").str.to_lowercase().is_in(self.owners)
        return condition

    def describe(self) -> str:
        parts = []
        if self.segments:
            parts.append("segment " + ", ".join(self.segments))
        if self.owners:
            parts.append(f"{len(self.owners)} CSMs")
        return "; ".join(parts) or "every account"


class DigestConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    audiences: list[Audience] = Field(min_length=1, max_length=50)

    @model_validator(mode="after")
    def _unique_names(self) -> DigestConfig:
        seen: set[str] = set()
        for audience in self.audiences:
            if audience.name in seen:
                raise ValueError(f"audience name {audience.name!r} is used twice")
            seen.add(audience.name)
        return self


def load_digest_config(path: str | Path | None) -> DigestConfig:
    """The audiences file, or the default single audience when `path` is empty."""
    if not path:
        return DigestConfig(audiences=[Audience(name="all", channel=DEFAULT_CHANNEL)])
    return load_yaml_model(Path(path), DigestConfig)


def week_of(day: dt.date) -> str:
    """The ISO week holding `day`, e.g. `2025-W18`: the exactly-once key's first half."""
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def week_bounds(week: str) -> tuple[dt.date, dt.date]:
    """Monday and Sunday of an ISO week `YYYY-Www`."""
    year, number = week.split("-W")
    monday = dt.date.fromisocalendar(int(year), int(number), 1)
    return monday, monday + dt.timedelta(days=6)


@dataclass
class DigestContent:
    """What one audience's digest says; `render` turns it into Slack text and blocks."""

    week: str
    audience: Audience
    last_day: dt.date
    grr: float | None
    nrr: float | None
    grr_before: float | None
    nrr_before: float | None
    renewals_due: pl.DataFrame  # renewal_pipeline rows of last_day within 90 days
    went_red: pl.DataFrame
    follow_through: pl.DataFrame
    accounts: int = 0
    untouched: int = 0
    extra: dict = field(default_factory=dict)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f} %"


def _movement(now: float | None, before: float | None) -> str:
    if now is None or before is None:
        return ""
    points = (now - before) * 100
    return " (no change)" if abs(points) < 0.05 else f" ({'+' if points > 0 else '−'}{abs(points):.1f} pts)"


def _money(value: float | None) -> str:
    return f"${(value or 0):,.0f}"


def _lines(frame: pl.DataFrame, line) -> str:
    shown = [line(row) for row in frame.head(MAX_LISTED).iter_rows(named=True)]
    if frame.height > MAX_LISTED:
        shown.append(f"… and {frame.height - MAX_LISTED} more")
    return "\n".join(shown) or "none"


def render(content: DigestContent) -> tuple[str, list[dict]]:
    """(fallback text, Block Kit blocks) for one audience's weekly digest."""
    monday, sunday = week_bounds(content.week)
    due, at_risk = content.renewals_due, content.renewals_due.filter(pl.col("at_risk"))
    title = f"Weekly CS digest {content.week} · {content.audience.name}"
    text = (f"{title}: GRR {_pct(content.grr)}, NRR {_pct(content.nrr)}; {due.height} renewals in 90 days "
            f"({at_risk.height} at risk); {content.went_red.height} accounts went red")
    retention = (
        f"*GRR* {_pct(content.grr)}{_movement(content.grr, content.grr_before)}   "
        f"*NRR* {_pct(content.nrr)}{_movement(content.nrr, content.nrr_before)}\n"
        "_trailing 12 months, renewals decided by the end of the week; change versus a week earlier_"
    )
    renewals = (
        f"*Renewals in the next 90 days:* {due.height} ({_money(due['arr'].sum())} ARR), "
        f"*at risk (red):* {at_risk.height} ({_money(at_risk['arr'].sum())})\n"
        + _lines(at_risk, lambda r: f"• {r['name']} — {r['renewal_date']} ({r['days_to_renewal']} d), "
                 f"{_money(r['arr'])}, {r['owner_email'] or 'no owner'}")
    )
    red = f"*Went red this week:* {content.went_red.height}\n" + _lines(
        content.went_red, lambda r: f"• {r['name']} ({r['segment']}), score {r['score']:.2f}, "
                                    f"was {r['band_before'] or 'unscored'}, {r['owner_email'] or 'no owner'}")
    follow = "*Alert follow-through (90 days):*\n" + _lines(
        content.follow_through.filter(pl.col("owner_email") != "all"),
        lambda r: f"• {r['owner_email']}: {r['alerts']} alerts, {r['tasks_done']} done, "
                  f"{_pct(r['done_on_time_share'])} on time, {r['open_overdue']} overdue",
    )
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text":
            f"{monday} – {sunday} · {content.audience.describe()} · {content.accounts} live accounts, "
            f"{content.untouched} without a CSM touch in 30 days · portfolio map below"}]},
        {"type": "section", "text": {"type": "mrkdwn", "text": retention}},
        {"type": "section", "text": {"type": "mrkdwn", "text": renewals[:3000]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": red[:3000]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": follow[:3000]}},
    ]
    return text, blocks
