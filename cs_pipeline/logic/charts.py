"""The portfolio charts, as Vega-Lite through altair: one function per chart, frames in, charts out.

The report embeds them with the inlined vega-embed bundle (logic/portfolio_report.py); the weekly digest
renders the portfolio map to PNG with vl-convert. No Dagster, no network.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import altair as alt
import polars as pl
from altair.utils.schemapi import debug_mode

from cs_pipeline.logic.portfolio import QUADRANT_LINE

BAND_COLOURS = {"red": "#d64545", "yellow": "#e0a800", "green": "#2f9e44", "no data": "#adb5bd"}
MAP_POINTS = 2000  # the largest accounts by ARR; a map of 100k points helps nobody and weighs megabytes
FOLLOW_THROUGH_CSMS = 40  # the CSMs with the most open tasks past due; thousands of bars help nobody either
WIDTH = 640

Chart = TypeVar("Chart")


def _unvalidated(build: Callable[..., Chart]) -> Callable[..., Chart]:
    """Build a chart without altair's validation of every object as it is made (debug mode),
    which walks every data row again at each step: seconds for a few thousand rows. The charts
    are fixed code; a test validates each one (tests/test_portfolio_report.py)."""
    @functools.wraps(build)
    def unvalidated(*args, **kwargs) -> Chart:
        with debug_mode(False):
            return build(*args, **kwargs)
    return unvalidated


def bundle_cache_dir() -> Path:
    """Where the vega-embed bundle is kept: $XDG_CACHE_HOME/cs_pipeline (default ~/.cache/cs_pipeline)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cs_pipeline"


def embed_bundle() -> tuple[str, str]:
    """The vega-embed JavaScript bundle the HTML reports inline (about 900 kB) and its Vega-Lite
    version. vl-convert builds it in every new process, 2 to 7 s of CPU, which a daily run would
    pay for each report; it is kept in `bundle_cache_dir()`, one file per vl-convert and
    Vega-Lite version, written atomically. When that folder cannot be written it is built each time."""
    from altair.utils._importers import import_vl_convert, vl_version_for_vl_convert

    vl_convert = import_vl_convert()
    version = vl_version_for_vl_convert()
    cached = bundle_cache_dir() / f"vega-embed-{vl_convert.__version__}-{version}.js"
    try:
        bundle = cached.read_text(encoding="utf-8")
        if bundle:
            return bundle, version
    except OSError:
        pass
    bundle = vl_convert.javascript_bundle(vl_version=version)
    incoming = cached.with_name(f".{cached.name}.{os.getpid()}")
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        incoming.write_text(bundle, encoding="utf-8")
        os.replace(incoming, cached)
    except OSError:
        with contextlib.suppress(OSError):
            incoming.unlink(missing_ok=True)
    return bundle, version


def _values(frame: pl.DataFrame) -> alt.Data:
    """Inline rows, dates as ISO strings (Vega-Lite parses them)."""
    temporal = [c for c, t in frame.schema.items() if t in (pl.Date, pl.Datetime)]
    return alt.Data(values=frame.with_columns(pl.col(temporal).cast(pl.String)).to_dicts())


def _band_scale() -> alt.Scale:
    return alt.Scale(domain=list(BAND_COLOURS), range=list(BAND_COLOURS.values()))


@_unvalidated
def retention_trend(retention: pl.DataFrame) -> alt.Chart:
    """GRR, NRR and renewal rate by month (the `all` audience of kpi_retention_monthly)."""
    long = (
        retention.filter(pl.col("arr_up_for_renewal") > 0)
        .select("period_month", pl.col("grr").alias("GRR"), pl.col("nrr").alias("NRR"), pl.col("renewal_rate").alias("Renewal rate"))
        .unpivot(index="period_month", variable_name="kpi", value_name="value")
    )
    return (
        alt.Chart(_values(long), title="Retention by renewal month")
        .mark_line(point=True)
        .encode(
            x=alt.X("period_month:T", title="month", timeUnit="yearmonth"),
            y=alt.Y("value:Q", title=None, axis=alt.Axis(format="%")),
            color=alt.Color("kpi:N", title=None),
            tooltip=["kpi:N", alt.Tooltip("period_month:T", timeUnit="yearmonth", title="month"), alt.Tooltip("value:Q", format=".1%")],
        )
        .properties(width=WIDTH, height=220)
    )


@_unvalidated
def arr_movement(retention: pl.DataFrame) -> alt.Chart:
    """ARR expanded, contracted and churned at renewal, by month."""
    long = retention.select(
        "period_month",
        pl.col("arr_expansion").alias("expansion"),
        (-pl.col("arr_contraction")).alias("contraction"),
        (-pl.col("arr_churned")).alias("churn"),
        pl.col("arr_new_logos").alias("new logos"),
    ).unpivot(index="period_month", variable_name="movement", value_name="arr")
    colours = alt.Scale(domain=["new logos", "expansion", "contraction", "churn"], range=["#4c6ef5", "#2f9e44", "#e0a800", "#d64545"])
    return (
        alt.Chart(_values(long), title="ARR movement by month")
        .mark_bar()
        .encode(
            x=alt.X("period_month:T", title="month", timeUnit="yearmonth"),
            y=alt.Y("sum(arr):Q", title="ARR", axis=alt.Axis(format="$,.0f")),
            color=alt.Color("movement:N", scale=colours, title=None),
            tooltip=["movement:N", alt.Tooltip("sum(arr):Q", format="$,.0f", title="ARR")],
        )
        .properties(width=WIDTH, height=220)
    )


@_unvalidated
def nps_trend(nps: pl.DataFrame) -> alt.LayerChart:
    """NPS (left axis) and survey response rate (right axis) by month."""
    base = alt.Chart(_values(nps.select("period_month", "nps", "response_rate", "responses")), title="NPS and response rate")
    x = alt.X("period_month:T", title="month", timeUnit="yearmonth")
    score = base.mark_line(point=True, color="#4c6ef5").encode(
        x=x, y=alt.Y("nps:Q", title="NPS", scale=alt.Scale(domain=[-100, 100])),
        tooltip=[alt.Tooltip("nps:Q", format=".0f"), "responses:Q"],
    )
    rate = base.mark_bar(opacity=0.3, color="#868e96").encode(
        x=x, y=alt.Y("response_rate:Q", title="response rate", axis=alt.Axis(format="%")),
        tooltip=[alt.Tooltip("response_rate:Q", format=".1%")],
    )
    return alt.layer(rate, score).resolve_scale(y="independent").properties(width=WIDTH, height=200)


@_unvalidated
def portfolio_map(points: pl.DataFrame, untouched_days: int) -> alt.LayerChart:
    """CSuP's quadrant: deployment x utilization, sized by ARR, coloured by band, a black ring
    around accounts without a CSM touch in `untouched_days` days."""
    shown = points.sort("arr", descending=True).head(MAP_POINTS).with_columns(
        pl.when(pl.col("untouched")).then(pl.lit(f"no touch in {untouched_days} d")).otherwise(pl.lit("touched")).alias("touch")
    )
    more = f" (the {MAP_POINTS:,} largest by ARR of {points.height:,})" if points.height > MAP_POINTS else ""
    # The rows go on the layer once, not on each of the two layers that draw them.
    accounts = _values(shown.select(
        "account_id", "name", "segment", "owner_email", "deployment_rate", "utilization_rate", "arr", "band", "touch",
        "days_since_last_touch",
    ))
    base = alt.Chart()
    axis = alt.Scale(domain=[0, 1])
    dots = base.mark_circle(opacity=0.75).encode(
        x=alt.X("deployment_rate:Q", title="deployment (seats in use / seats bought)", scale=axis, axis=alt.Axis(format="%")),
        y=alt.Y("utilization_rate:Q", title="utilization (30-day active / activated)", scale=axis, axis=alt.Axis(format="%")),
        size=alt.Size("arr:Q", title="ARR", scale=alt.Scale(range=[20, 600]), legend=alt.Legend(format="$,.0f")),
        color=alt.Color("band:N", scale=_band_scale(), title="band"),
        tooltip=["name:N", "segment:N", "owner_email:N", alt.Tooltip("arr:Q", format="$,.0f"), "band:N",
                 alt.Tooltip("deployment_rate:Q", format=".0%"), alt.Tooltip("utilization_rate:Q", format=".0%"),
                 "days_since_last_touch:Q"],
    )
    rings = base.transform_filter(alt.datum.touch != "touched").mark_point(
        shape="circle", filled=False, color="black", strokeWidth=1.5
    ).encode(
        x="deployment_rate:Q", y="utilization_rate:Q",
        size=alt.Size("arr:Q", scale=alt.Scale(range=[60, 900]), legend=None),
        shape=alt.Shape("touch:N", title=None, legend=alt.Legend(symbolStrokeColor="black")),
    )
    lines = alt.Chart(alt.Data(values=[{"v": QUADRANT_LINE}]))
    rules = lines.mark_rule(strokeDash=[4, 4], color="#868e96").encode(x="v:Q") + lines.mark_rule(
        strokeDash=[4, 4], color="#868e96").encode(y="v:Q")
    return alt.layer(rules, dots, rings, data=accounts, title=f"Portfolio map{more}").properties(width=WIDTH, height=460)


@_unvalidated
def renewal_pipeline(pipeline: pl.DataFrame) -> alt.Chart:
    """ARR renewing in the next 90 and 180 days, by band: one row per window and band is drawn,
    not a row per renewal (tens of thousands at 100k accounts)."""
    sums = pipeline.group_by("renewal_window", "band").agg(pl.col("arr").sum(), pl.len().alias("accounts"))
    return (
        alt.Chart(_values(sums.sort("renewal_window", "band")), title="Renewal pipeline")
        .mark_bar()
        .encode(
            y=alt.Y("renewal_window:N", title=None, sort=["0-90 days", "91-180 days"]),
            x=alt.X("arr:Q", title="ARR renewing", stack="zero", axis=alt.Axis(format="$,.0f")),
            color=alt.Color("band:N", scale=_band_scale(), title="band"),
            tooltip=["renewal_window:N", "band:N", alt.Tooltip("arr:Q", format="$,.0f", title="ARR"),
                     alt.Tooltip("accounts:Q", title="accounts")],
        )
        .properties(width=WIDTH, height=120)
    )


@_unvalidated
def follow_through(per_csm: pl.DataFrame) -> alt.HConcatChart:
    """Per CSM: the share of tasks done by their due date, and open tasks past due; the
    FOLLOW_THROUGH_CSMS with the most open tasks past due (then the most alerts)."""
    everyone = per_csm.filter(pl.col("owner_email") != "all")
    rows = everyone.sort("open_overdue", "alerts", "owner_email", descending=[True, True, False]).head(FOLLOW_THROUGH_CSMS)
    more = f" ({rows.height} of {everyone.height:,} CSMs, the most overdue first)" if everyone.height > rows.height else ""
    base = alt.Chart(_values(rows.select("owner_email", "alerts", "tasks_done", "done_on_time_share", "open_overdue",
                                         "median_days_to_done")))
    y = alt.Y("owner_email:N", title=None, sort="-x")
    share = base.mark_bar(color="#2f9e44").encode(
        y=y, x=alt.X("done_on_time_share:Q", title="tasks done by their due date", scale=alt.Scale(domain=[0, 1]),
                     axis=alt.Axis(format="%")),
        tooltip=["owner_email:N", "alerts:Q", "tasks_done:Q", alt.Tooltip("done_on_time_share:Q", format=".0%"),
                 alt.Tooltip("median_days_to_done:Q", format=".1f")],
    ).properties(width=300, height=alt.Step(18), title=f"Done on time{more}")
    overdue = base.mark_bar(color="#d64545").encode(
        y=alt.Y("owner_email:N", title=None, sort="-x", axis=None), x=alt.X("open_overdue:Q", title="open tasks past due"),
        tooltip=["owner_email:N", "open_overdue:Q"],
    ).properties(width=220, height=alt.Step(18), title="Overdue")
    return alt.hconcat(share, overdue)
