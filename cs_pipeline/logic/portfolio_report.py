"""The portfolio report: one self-contained HTML page (charts inlined, no network to view it).

`render_report` takes plain frames (see `cs_pipeline.logic.portfolio.ReportData`) and returns the page. The Vega-Lite charts
come from logic/charts.py; the vega-embed bundle that draws them is the one altair inlines
(`chart.save(..., inline=True)`), included once for all charts and drawn as SVG.
"""

from __future__ import annotations

import datetime as dt
import html
import json

import altair as alt
import polars as pl

from cs_pipeline.logic import charts
from cs_pipeline.logic.portfolio import ReportData

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1100px;color:#212529;padding:0 16px}
h1{font-size:24px;margin-bottom:4px} h2{font-size:18px;margin-top:32px;border-bottom:1px solid #dee2e6;padding-bottom:4px}
.sub{color:#6c757d;margin-top:0} .tiles{display:flex;flex-wrap:wrap;gap:12px}
.tile{border:1px solid #dee2e6;border-radius:6px;padding:10px 14px;min-width:120px}
.tile b{display:block;font-size:22px} .tile span{color:#6c757d;font-size:12px}
table{border-collapse:collapse;font-size:13px;margin-top:8px} td,th{border-bottom:1px solid #e9ecef;padding:4px 10px;text-align:left}
.red{color:#d64545;font-weight:600} .note{color:#6c757d;font-size:12px} .chart{margin:8px 0}
"""


def _pct(value) -> str:
    return "n/a" if value is None else f"{value * 100:.1f} %"


def _money(value) -> str:
    return f"${(value or 0):,.0f}"


def _tile(label: str, value: str) -> str:
    return f'<div class="tile"><b>{html.escape(value)}</b><span>{html.escape(label)}</span></div>'


def _table(frame: pl.DataFrame, formats: dict[str, callable] | None = None, limit: int = 15) -> str:
    formats = formats or {}
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    rows = []
    for row in frame.head(limit).iter_rows(named=True):
        cells = "".join(
            f"<td>{html.escape(formats[c](v) if c in formats and v is not None else ('' if v is None else str(v)))}</td>"
            for c, v in row.items()
        )
        rows.append(f"<tr>{cells}</tr>")
    more = f'<p class="note">… and {frame.height - limit:,} more</p>' if frame.height > limit else ""
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>{more}"


class _Charts:
    """Collects charts as (div id, spec) and writes one script that draws them all."""

    def __init__(self) -> None:
        self.specs: list[tuple[str, dict]] = []

    def add(self, name: str, chart: alt.TopLevelMixin) -> str:
        div = f"chart-{name}"
        # Not validated against the Vega-Lite schema here: that walks every data row (10 s for a
        # 5,000-point map); the charts are fixed code, tested, and vega-embed reports a bad spec.
        self.specs.append((div, chart.to_dict(validate=False)))
        return f'<div class="chart" id="{div}" data-chart="{name}"></div>'

    def script(self) -> str:
        bundle, _ = charts.embed_bundle()
        specs = json.dumps(dict(self.specs)).replace("</", "<\\/")
        return (
            f"<script type=\"text/javascript\">{bundle}</script>\n"
            "<script type=\"text/javascript\">\n"
            f"const specs = {specs};\n"
            "const options = {mode: 'vega-lite', renderer: 'svg', actions: false};\n"
            "// window.chartsDrawn: true once every chart has drawn (a browser test waits for it)\n"
            "Promise.all(Object.entries(specs).map(([id, spec]) => vegaEmbed('#' + id, spec, options)))\n"
            "  .then(() => { window.chartsDrawn = true; })\n"
            "  .catch(err => { window.chartsDrawn = 'failed'; console.error(err); });\n"
            "</script>"
        )


def _empty(what: str) -> str:
    return f'<p class="note">{html.escape(what)}</p>'


def render_report(data: ReportData) -> str:
    charts_ = _Charts()
    # Months after the report's day hold only pending renewals: nothing to draw yet.
    month = pl.col("period_month") <= data.day
    retention, nps = data.retention.filter(month), data.nps.filter(month)
    points, pipeline, follow = data.points, data.pipeline, data.follow_through
    decided = retention.filter(pl.col("arr_up_for_renewal") > 0).sort("period_month")
    last = decided.row(-1, named=True) if decided.height else {}
    everyone = follow.filter(pl.col("owner_email") == "all")
    team = everyone.row(0, named=True) if everyone.height else {}
    at_risk = pipeline.filter(pl.col("at_risk"))
    tiles = "".join([
        _tile("GRR, trailing 12 months", _pct(data.trailing.get("grr"))),
        _tile("NRR, trailing 12 months", _pct(data.trailing.get("nrr"))),
        _tile(f"renewal rate, {last.get('period_month', '')}"[:40], _pct(last.get("renewal_rate"))),
        _tile(f"logo churn, {last.get('period_month', '')}"[:40], _pct(last.get("logo_churn_rate"))),
        _tile("live accounts", f"{points.height:,}"),
        _tile(f"no CSM touch in {data.untouched_days} d", f"{int(points['untouched'].sum()) if points.height else 0:,}"),
        _tile("renewals in 90 days", f"{pipeline.filter(pl.col('days_to_renewal') <= 90).height:,}"),
        _tile("renewals at risk (red)", f"{at_risk.height:,}"),
        _tile("tasks done on time", _pct(team.get("done_on_time_share"))),
        _tile("open tasks past due", f"{team.get('open_overdue', 0):,}"),
    ])
    parts = [
        f"<h1>Customer Success portfolio</h1><p class=\"sub\">as of {data.day} · generated by cs_pipeline</p>",
        f'<div class="tiles">{tiles}</div>',
        "<h2>Retention and expansion</h2>",
        charts_.add("retention", charts.retention_trend(decided)) if decided.height else _empty("No renewals decided yet."),
        charts_.add("arr-movement", charts.arr_movement(retention)) if retention.height else _empty("No contract terms yet."),
        '<p class="note">GRR = ARR kept / ARR up for renewal (never above 100 %); NRR adds expansion. '
        "By the month a term ends; pending renewals are left out. Definitions: docs/kpis.md.</p>",
        "<h2>NPS and survey response rate</h2>",
        charts_.add("nps", charts.nps_trend(nps)) if nps.height else _empty("No NPS responses yet."),
        "<h2>Portfolio map</h2>",
        charts_.add("portfolio-map", charts.portfolio_map(points, data.untouched_days)) if points.height
        else _empty("No live accounts on this day."),
        f'<p class="note">Each live account at (deployment, utilization), sized by ARR, coloured by health band; '
        f"a black ring marks no CSM touch in {data.untouched_days} days.</p>",
        "<h2>Renewal pipeline</h2>",
        charts_.add("renewal-pipeline", charts.renewal_pipeline(pipeline)) if pipeline.height
        else _empty("No renewals in the next 180 days."),
        _table(pipeline.sort(pl.col("at_risk"), "arr", descending=[True, True]).select(
            "name", "segment", "owner_email", "renewal_date", "days_to_renewal", "arr", "band"), {"arr": _money})
        if pipeline.height else "",
        "<h2>Alert follow-through (alerts opened in the last 90 days)</h2>",
        charts_.add("follow-through", charts.follow_through(follow)) if follow.filter(pl.col("owner_email") != "all").height
        else _empty("No alerts in the last 90 days."),
        _table(follow.select("owner_email", "alerts", "tasks", "tasks_done", "done_on_time_share", "median_days_to_done",
                             "open_overdue"), {"done_on_time_share": _pct, "median_days_to_done": lambda v: f"{v:.1f}"})
        if follow.height else "",
        '<p class="note">Done on time: tasks done by their due date, of the tasks done or past due. Median time to done '
        "needs the completion time the actions store records; it is blank when none is recorded.</p>",
        "<h2>Health-model backtest</h2>",
        _table(data.backtest, limit=10) + f'<p class="note">from {html.escape(data.backtest_source)}'
        + (f' · <a href="{html.escape(data.backtest_report)}">the backtest report</a>' if data.backtest_report else "")
        + "</p>"
        if data.backtest is not None and data.backtest.height
        else _empty("No backtest yet: run `cs-pipeline backtest` to see how well the health score foresaw churn."),
    ]
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>CS portfolio {data.day}</title><style>{CSS}</style></head><body>\n"
        + "\n".join(parts)
        + "\n"
        + charts_.script()
        + "\n</body></html>\n"
    )


def chart_names(page: str) -> list[str]:
    """The charts a page holds (its `data-chart` divs), for tests and metadata."""
    import re

    return re.findall(r'data-chart="([^"]+)"', page)
