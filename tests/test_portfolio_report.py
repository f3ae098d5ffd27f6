"""The portfolio report: `cs-pipeline report` and the `portfolio_report` asset write one
self-contained HTML file, and a real headless Chromium draws every chart with no console error."""

import os
import re

import dagster as dg
import pytest

from cs_pipeline.cli import main
from tests.support import browser
from tests.support.portfolio_warehouse import DAY, write_portfolio_warehouse

CHARTS = ["retention", "arr-movement", "nps", "portfolio-map", "renewal-pipeline", "follow-through"]
DRAWN = "window.chartsDrawn !== undefined"

needs_chromium = pytest.mark.skipif(not browser.available() and not os.environ.get("CI"), reason="no /usr/bin/chromium")


@pytest.fixture
def warehouse(tmp_path, monkeypatch):
    path = write_portfolio_warehouse(tmp_path / "w.duckdb")
    monkeypatch.setenv("CS_PIPELINE_WAREHOUSE", str(path))
    monkeypatch.setenv("CS_PIPELINE_TODAY", "2025-05-06")
    return path


def _charts_drawn(page) -> dict[str, int]:
    return page.evaluate(
        "Object.fromEntries([...document.querySelectorAll('[data-chart]')]"
        ".map(d => [d.dataset.chart, d.querySelectorAll('svg .mark-symbol, svg .mark-rect, svg .mark-line').length]))"
    )


@needs_chromium
def test_cli_report_opens_offline_and_draws_every_chart(warehouse, tmp_path, capsys):
    out = tmp_path / "report.html"
    assert main(["report", "--out", str(out)]) == 0
    assert f"Portfolio report for {DAY}" in capsys.readouterr().out
    page_source = out.read_text()
    # self-contained: no script or stylesheet is fetched from anywhere
    assert not re.search(r"<(script|link)[^>]+(src|href)=", page_source)
    assert "No backtest yet" in page_source
    with browser.Browser() as chromium:
        page = chromium.open(out.as_uri(), ready=DRAWN)
        assert page.evaluate("window.chartsDrawn") is True
        drawn = _charts_drawn(page)
        assert page.errors == []
    assert list(drawn) == CHARTS
    assert all(marks > 0 for marks in drawn.values()), drawn


def test_report_shows_the_backtest_headline_when_its_tables_exist(tmp_path, monkeypatch):
    path = write_portfolio_warehouse(tmp_path / "w.duckdb", backtest=True)
    monkeypatch.setenv("CS_PIPELINE_WAREHOUSE", str(path))
    out = tmp_path / "r.html"
    assert main(["report", "--out", str(out), "--date", DAY.isoformat()]) == 0
    page = out.read_text()
    assert "evaluation.backtest_auc" in page and "days_since_last_login" in page


def test_report_cli_bad_input_is_one_line_and_exit_2(warehouse, tmp_path, capsys):
    assert main(["report", "--out", str(tmp_path / "r.pdf")]) == 2
    assert main(["report", "--date", "yesterday"]) == 2
    assert main(["report", "--warehouse", str(tmp_path / "none.duckdb")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3 and all(line.startswith("cs-pipeline: ") for line in errors)
    assert "does not exist" in errors[2]


def test_portfolio_report_asset_links_to_its_file(warehouse, tmp_path, monkeypatch):
    from cs_pipeline.assets.portfolio import portfolio_report
    from cs_pipeline.resources.warehouse import WarehouseResource

    monkeypatch.setenv("CS_PIPELINE_REPORTS_DIR", str(tmp_path / "reports"))
    result = dg.materialize([portfolio_report], resources={"warehouse": WarehouseResource(path=str(warehouse))},
                            partition_key=DAY.isoformat())
    metadata = result.asset_materializations_for_node("portfolio_report")[0].metadata
    path = tmp_path / "reports" / f"portfolio-report-{DAY}.html"
    assert metadata["path"].value == str(path) and path.exists()
    assert metadata["charts"].value == CHARTS


def test_every_chart_is_a_valid_vega_lite_spec():
    """The report skips altair's schema validation for speed; it is checked here instead."""
    import polars as pl

    from cs_pipeline.logic import charts
    from cs_pipeline.logic.portfolio import follow_through, portfolio_map, renewal_pipeline
    from tests.support.portfolio_warehouse import alerts_and_tasks, health_rows, kpi_rows

    retention, nps = kpi_rows()
    health = health_rows().filter(pl.col("partition_date") == DAY)
    alerts, tasks = alerts_and_tasks()
    tasks = tasks.with_columns(pl.lit(None, dtype=pl.Datetime("us")).alias("done_at"))
    for chart in (
        charts.retention_trend(retention), charts.arr_movement(retention), charts.nps_trend(nps),
        charts.portfolio_map(portfolio_map(health), 30), charts.renewal_pipeline(renewal_pipeline(health)),
        charts.follow_through(follow_through(alerts, tasks, DAY)),
    ):
        assert chart.to_dict(validate=True)["$schema"].startswith("https://vega.github.io/schema/vega-lite/")


def test_the_vega_embed_bundle_is_built_once_then_read_from_the_cache(tmp_path, monkeypatch):
    """vl-convert builds the bundle in every new process (seconds of CPU): a daily run reads it
    from the user's cache instead, and a cache it cannot write only costs the build."""
    import vl_convert

    from cs_pipeline.logic import charts

    built, build = [], vl_convert.javascript_bundle
    monkeypatch.setattr(vl_convert, "javascript_bundle", lambda **kw: built.append(kw) or build(**kw))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    bundle, version = charts.embed_bundle()
    assert "vegaEmbed" in bundle and built == [{"vl_version": version}]
    assert charts.embed_bundle() == (bundle, version) and len(built) == 1
    [cached] = (tmp_path / "cache" / "cs_pipeline").iterdir()
    assert cached.name == f"vega-embed-{vl_convert.__version__}-{version}.js" and cached.read_text() == bundle

    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "not-a-folder"))
    assert charts.embed_bundle() == (bundle, version) and len(built) == 2
