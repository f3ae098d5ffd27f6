"""The backtest and calibration report opened in the real headless Chromium: every chart renders."""

import datetime as dt

import polars as pl

from cs_pipeline.logic.backtest import BacktestResult, BacktestSpec, aucs, by_segment, churn_by_band, lift_by_decile, rule_metrics
from cs_pipeline.logic.calibrate import calibrate
from cs_pipeline.logic.report import write_report
from cs_pipeline.logic.scoring import score_health
from tests.support import browser
from tests.test_calibrate import CURRENT, history


def _backtest(frame: pl.DataFrame) -> BacktestResult:
    spec = BacktestSpec(dt.date(2025, 1, 1), dt.date(2025, 7, 15))
    alert_rows = frame.filter(pl.col("events_30d") < 5).select(
        pl.lit("no_login_20d").alias("rule_id"), "account_id", pl.col("partition_date").alias("episode_start"),
        "partition_date", pl.lit("csm@example.com").alias("owner_email"))
    churns = frame.filter(pl.col("churned")).select("account_id", (pl.col("partition_date") + dt.timedelta(days=45)).alias("churn_date"))
    return BacktestResult(
        spec=spec, known_until=dt.date(2025, 12, 1), dates=sorted(frame["partition_date"].unique()), censored=[],
        observations=frame.height, accounts=frame["account_id"].n_unique(), churners=churns["account_id"].n_unique(),
        positives=int(frame["churned"].sum()), auc=aucs(frame), lift=lift_by_decile(frame), bands=churn_by_band(frame),
        segments=by_segment(frame), rules=rule_metrics(alert_rows, churns.unique("account_id"), spec, dt.date(2025, 12, 1), 3),
        notes=["2 observation date(s) dropped: a note <with> markup"],
    )


def test_the_report_renders_every_chart_in_chromium(tmp_path):
    frame = score_health(history(accounts=600), CURRENT)
    calibration = calibrate(history(accounts=1500), CURRENT)
    path = write_report(tmp_path / "report.html", _backtest(frame), calibration)
    html = path.read_text()
    assert "<script src=" not in html and "cdn.jsdelivr" not in html  # no network needed
    with browser.Browser() as chromium:
        # Four charts (AUC, test-period AUC, lift, bands), each an SVG made by vega-embed.
        page = chromium.open(path.as_uri(), ready="document.querySelectorAll('svg.marks').length >= 4")
        assert page.evaluate("document.querySelectorAll('svg.marks').length") == 4
        assert page.evaluate("document.querySelector('[data-failed=\"yes\"]') === null")
        assert page.errors == []
        text = page.evaluate("document.body.innerText")
        assert "a note <with> markup" in text and "What changed and why" in text
        page.screenshot(tmp_path / "report.png")
    assert (tmp_path / "report.png").stat().st_size > 20_000
