"""The backtest (and calibration) report: one self-contained HTML file with altair charts.

The Vega, Vega-Lite and vega-embed scripts are inlined once (vl-convert's bundle, as
`chart.save(..., inline=True)` does), so the file opens with no network. Charts render as SVG.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from pathlib import Path
from typing import TYPE_CHECKING

import altair as alt
import polars as pl

from cs_pipeline.logic.backtest import BASELINES, MODEL, BacktestResult
from cs_pipeline.logic.charts import embed_bundle

if TYPE_CHECKING:  # calibrate imports scikit-learn (1 s); the asset that writes reports never calibrates
    from cs_pipeline.logic.calibrate import CalibrationResult

LABELS = {MODEL: "health score (model)", "calibrated": "calibrated model", "days_since_last_login": "days since last login",
          "events_30d": "30-day events"}
COLOURS = dict(zip(LABELS.values(), ["#4c78a8", "#54a24b", "#f58518", "#b279a2"]))
CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; } th { background: #f4f4f4; }
td.num { text-align: right; } summary { cursor: pointer; }
.note { color: #555; font-size: 0.9em; } .chart { margin: 0.5em 0 1em; }
"""


def _colours(rows: list[dict]) -> alt.Scale:
    """Each score keeps its colour in every chart; the legend lists only the scores drawn."""
    shown = [label for label in COLOURS if any(r["score"] == label for r in rows)]
    return alt.Scale(domain=shown, range=[COLOURS[label] for label in shown])


def _auc_chart(aucs: dict[str, float | None], title: str) -> alt.Chart:
    rows = [{"score": LABELS.get(k, k), "AUC": v} for k, v in aucs.items() if v is not None]
    base = alt.Chart(alt.Data(values=rows)).encode(
        y=alt.Y("score:N", sort=None, title=None), x=alt.X("AUC:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(tickCount=10, format=".1f"))
    )
    bars = base.mark_bar().encode(color=alt.Color("score:N", legend=None, scale=_colours(rows)))
    text = base.mark_text(align="left", dx=3).encode(text=alt.Text("AUC:Q", format=".3f"))
    rule = alt.Chart(alt.Data(values=[{"AUC": 0.5}])).mark_rule(strokeDash=[4, 4], color="#888").encode(x="AUC:Q")
    return (bars + text + rule).properties(title=title, width=600, height=30 * max(len(rows), 1))


def _lift_chart(lift: pl.DataFrame) -> alt.Chart:
    rows = [{**r, "score": LABELS.get(r["score"], r["score"])} for r in lift.to_dicts()]
    return (
        alt.Chart(alt.Data(values=rows))
        .mark_line(point=True)
        .encode(
            x=alt.X("decile:O", title="decile (1 = least healthy 10 %)"),
            y=alt.Y("lift:Q", title="churn rate / base rate"),
            color=alt.Color("score:N", title=None, scale=_colours(rows)),
            tooltip=["score:N", "decile:O", "rows:Q", "churned:Q", alt.Tooltip("churn_rate:Q", format=".1%")],
        )
        .properties(title="Lift by score decile", width=600, height=260)
    )


def _band_chart(bands: pl.DataFrame) -> alt.Chart:
    colors = alt.Scale(domain=["red", "yellow", "green", "none"], range=["#d62728", "#e6b800", "#2ca02c", "#999"])
    return (
        alt.Chart(alt.Data(values=bands.to_dicts()))
        .mark_bar()
        .encode(
            x=alt.X("band:N", sort=["red", "yellow", "green", "none"], title=None),
            y=alt.Y("churn_rate:Q", title="share that churned in the lead window", axis=alt.Axis(format="%")),
            color=alt.Color("band:N", scale=colors, legend=None),
            tooltip=["band:N", "rows:Q", "churned:Q", alt.Tooltip("churn_rate:Q", format=".1%")],
        )
        .properties(title="Churn rate by band", width=300, height=220)
    )


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return html.escape(str(value))


def _table(frame: pl.DataFrame) -> str:
    if frame.height == 0:
        return "<p class='note'>(none)</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td class='num'>{_cell(v)}</td>" if isinstance(v, (int, float)) else f"<td>{_cell(v)}</td>" for v in row)
        + "</tr>"
        for row in frame.iter_rows()
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render(backtest: BacktestResult, calibration: CalibrationResult | None = None, title: str = "Health score backtest") -> str:
    """The report as one HTML string."""
    spec = backtest.spec
    charts: list[tuple[str, alt.TopLevelMixin]] = []
    sections: list[str] = []
    aucs = {MODEL: backtest.auc[MODEL], **{b: backtest.auc[b] for b in BASELINES}}
    charts.append(("auc", _auc_chart(aucs, f"AUC for churn {spec.lead_min}-{spec.lead_max} days ahead (0.5 = chance)")))
    sections.append(
        f"<h2>How well each score ranks the accounts that churned</h2><div class='chart' id='auc'></div>"
        "<p class='note'>AUC: the chance that an account which churned in the lead window had a lower (less healthy) "
        "figure than one which did not. Pooled over every observation date.</p>"
    )
    if calibration is not None:
        charts.append(("auc_test", _auc_chart(calibration.auc_test, "AUC on the later (test) period")))
        sections.append(
            "<h2>Calibration: validated on time</h2>"
            f"<p>Fitted on {calibration.fit_dates[0]} .. {calibration.fit_dates[-1]} ({calibration.fit_churners} churned accounts), "
            f"tested on {calibration.test_dates[0]} .. {calibration.test_dates[-1]} ({calibration.test_churners}); "
            f"{len(calibration.purged_dates)} date(s) between them left out so no churn is seen by both."
            + (f" Note: {html.escape(calibration.split_note)}." if calibration.split_note else "") + "</p>"
            "<div class='chart' id='auc_test'></div><h3>What changed and why</h3><ul>"
            + "".join(f"<li>{html.escape(line)}</li>" for line in calibration.changes)
            + f"</ul><details><summary>Variables not used ({len(calibration.rejected)}), and why</summary>"
            + _table(pl.DataFrame(calibration.rejected, schema=["variable", "why"], orient="row"))
            + "</details>"
        )
    charts.append(("lift", _lift_chart(backtest.lift)))
    sections.append("<h2>Lift by decile</h2><div class='chart' id='lift'></div>")
    charts.append(("bands", _band_chart(backtest.bands)))
    sections.append("<h2>Churn by band</h2><div class='chart' id='bands'></div>" + _table(backtest.bands))
    sections.append("<h2>By segment</h2>" + _table(backtest.segments))
    sections.append(
        "<h2>Rules</h2><p class='note'>Alerts are episodes starting in the range. Precision: the account churned within "
        f"{spec.lead_max} days after the episode began (episodes whose {spec.lead_max} days are not over yet are not judged). "
        f"Warned share: churners with an episode {spec.lead_min} to {spec.lead_max} days before the churn. Lead time: "
        "days from the first episode to the churn.</p>" + _table(backtest.rules)
    )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in backtest.notes)
    bundle, version = embed_bundle()
    embeds = "\n".join(
        f"vegaEmbed('#{div}', {json.dumps(chart.to_dict())}, {{renderer: 'svg', actions: false}})"
        f".catch(e => {{ const d = document.getElementById('{div}'); d.textContent = 'chart failed: ' + e; "
        f"d.dataset.failed = 'yes'; console.error(e); }});"
        for div, chart in charts
    )
    header = (
        f"<h1>{html.escape(title)}</h1><p>Observation dates every {spec.every_days} days from {spec.first} to "
        f"{backtest.dates[-1]} ({len(backtest.dates)} dates, {backtest.observations:,} account-days of live accounts, "
        f"{backtest.churners} of {backtest.accounts} accounts churned {spec.lead_min}-{spec.lead_max} days after one of them). "
        f"Churns known up to {backtest.known_until}.</p>" + (f"<ul class='note'>{notes}</ul>" if notes else "")
        + f"<p class='note'>Generated {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC by cs-pipeline.</p>"
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset='UTF-8'><title>{html.escape(title)}</title><style>{CSS}</style>"
        f"<script type='text/javascript'>\n// vega-embed bundle with Vega-Lite v{version}\n{bundle}\n</script></head>"
        f"<body>{header}{''.join(sections)}<script type='text/javascript'>\n{embeds}\n</script></body></html>"
    )


def write_report(path: Path, backtest: BacktestResult, calibration: CalibrationResult | None = None, title: str | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    default = "Health model calibration" if calibration is not None else "Health score backtest"
    path.write_text(render(backtest, calibration, title or default), encoding="utf-8")
    return path
