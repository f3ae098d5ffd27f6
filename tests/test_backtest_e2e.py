"""`cs-pipeline backtest` and `calibrate`, and the `health_backtest` asset, on a real DuckDB warehouse
holding a small synthetic churn history (bench/evaluation.py: churn follows a hidden engagement)."""

import json
import shutil

import dagster as dg
import duckdb
import pytest

from bench.evaluation import synthetic_history, write_warehouse
from cs_pipeline import cli, settings
from cs_pipeline.cli.evaluation import backtest_headline
from cs_pipeline.logic.config import load_health_model

TODAY = "2026-03-01"
RANGE = ["--from", "2025-01-01", "--to", "2025-12-31"]


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    root = tmp_path_factory.mktemp("backtest")
    write_warehouse(root / "warehouse.duckdb", *synthetic_history(accounts=1500, days=365, seed=5))
    return root / "warehouse.duckdb"


@pytest.fixture
def run(warehouse, monkeypatch, capsys):
    monkeypatch.setenv("CS_PIPELINE_TODAY", TODAY)

    def run(*args):
        # Each command starts from the defaults (main() sets these from --warehouse and --config).
        monkeypatch.setenv("CS_PIPELINE_WAREHOUSE", str(warehouse))
        monkeypatch.setenv("CS_PIPELINE_CONFIG_DIR", str(settings.SHIPPED_CONFIG_DIR))
        code = cli.main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_backtest_json_gives_the_aucs_and_each_rules_figures(run, tmp_path):
    code, out, err = run("backtest", *RANGE, "--format", "json", "--report", str(tmp_path / "r.html"))
    assert code == 0, err
    summary = json.loads(out)
    assert set(summary["auc"]["baselines"]) == {"days_since_last_login", "events_30d"}
    assert 0.55 < summary["auc"]["model"] < 1
    rule = summary["rules"]["no_login_20d"]
    assert rule["alerts"] > 0 and 0 < rule["precision"] < 1 and rule["median_lead_days"] > 0 and 0 < rule["warned_share"] < 1
    # The last 90 + 30 days cannot be judged yet: those dates are dropped, and the run says so.
    assert summary["censored_dates"] and summary["observation_dates"][-1] <= "2025-09-01"
    assert any("not fully known" in note for note in summary["notes"])
    assert (tmp_path / "r.html").stat().st_size > 100_000


def test_calibrate_writes_a_model_usable_as_is_and_never_applies_it_unasked(run, tmp_path):
    active = (settings.SHIPPED_CONFIG_DIR / "health_model.yaml").read_text()
    out = tmp_path / "proposed" / "health_model.yaml"
    code, text, err = run("calibrate", *RANGE, "--out", str(out))
    assert code == 0, err
    assert "AUC on the test period: calibrated" in text and "What changed:" in text
    assert (settings.SHIPPED_CONFIG_DIR / "health_model.yaml").read_text() == active
    model = load_health_model(out)
    assert all(0 < i.weight <= 1 for i in model.indicators)
    code, text, err = run("backtest", *RANGE, "--config", str(out.parent), "--format", "json")
    assert code == 0, err
    # --apply refuses the shipped folder, and replaces (with a backup) a folder of one's own.
    code, _, err = run("calibrate", *RANGE, "--out", str(out), "--apply")
    assert code == 2 and "shipped" in err, err
    mine = tmp_path / "mine"
    shutil.copytree(settings.SHIPPED_CONFIG_DIR, mine)
    code, _, err = run("calibrate", *RANGE, "--out", str(tmp_path / "p2" / "health_model.yaml"), "--config", str(mine), "--apply")
    assert code == 0, err
    assert (mine / "health_model.yaml").read_text() == (tmp_path / "p2" / "health_model.yaml").read_text()
    assert list(mine.glob("health_model.yaml.*.bak"))


def test_bad_input_is_one_line_and_exit_code_2(run, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(settings.SHIPPED_CONFIG_DIR, broken)
    path = broken / "health_model.yaml"
    path.write_text(path.read_text().replace("direction: higher_is_better", "direction: upwards", 1))
    cases = [
        (["backtest", "--from", "2023-01-01", "--to", "2023-06-30"], "outside the data"),
        (["backtest", *RANGE, "--config", str(broken)], "invalid model"),
        (["backtest", *RANGE, "--lead", "30-90"], "MIN:MAX"),
        (["backtest", "--from", "2025-10-01", "--to", "2025-12-31"], "known up to"),
        (["calibrate", "--from", "2025-01-01", "--to", "2025-03-01", "--out", str(tmp_path / "x.yaml")], "needed"),
    ]
    for args, words in cases:
        code, _, err = run(*args)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, (args, err)


def test_no_churn_in_the_range_is_refused(run, warehouse, tmp_path):
    empty = tmp_path / "w.duckdb"
    shutil.copy(warehouse, empty)
    with duckdb.connect(str(empty)) as con:
        con.execute("DELETE FROM marts.fct_term_outcomes")
    code, _, err = run("backtest", *RANGE, "--warehouse", str(empty))
    assert code == 2 and "no live account churned" in err


def test_the_asset_writes_evaluation_tables_metadata_and_the_report(warehouse, tmp_path, monkeypatch, capsys):
    from cs_pipeline.assets.backtest import health_backtest
    from cs_pipeline.resources.config import PipelineConfig
    from cs_pipeline.resources.warehouse import WarehouseResource

    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(warehouse, copy)
    monkeypatch.setenv("CS_PIPELINE_TODAY", TODAY)
    monkeypatch.setenv("CS_PIPELINE_WAREHOUSE", str(copy))
    result = dg.materialize(
        [health_backtest],
        resources={"warehouse": WarehouseResource(path=str(copy)), "cs_config": PipelineConfig(config_dir=str(settings.SHIPPED_CONFIG_DIR))},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    metadata = result.asset_materializations_for_node("health_backtest")[0].metadata
    assert metadata["status"].value == "computed" and 0.5 < metadata["auc_model"].value < 1
    assert "no_login_20d" in metadata["rules"].value
    report = metadata["report"].value
    assert report == str(tmp_path / "reports" / "health_backtest.html") and (tmp_path / "reports" / "health_backtest.html").exists()
    with duckdb.connect(str(copy), read_only=True) as con:
        scores = dict(con.execute("SELECT score, auc FROM evaluation.backtest_auc").fetchall())
        rules = con.execute("SELECT count(*) FROM evaluation.backtest_rules").fetchone()[0]
    assert set(scores) == {"model", "days_since_last_login", "events_30d"} and rules == 8
    # The demo ends with the headline read from those tables, and a calibration on the same history.
    monkeypatch.setenv("CS_PIPELINE_CONFIG_DIR", str(settings.SHIPPED_CONFIG_DIR))
    backtest_headline()
    headline = capsys.readouterr().out
    assert f"AUC of the health score {scores['model']:.3f}" in headline
    assert "calibrated on the earlier dates, AUC on the later ones" in headline and "no_login_20d" in headline
