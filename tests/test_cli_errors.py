"""One line per error on the command line; the traceback only with --debug (or CS_PIPELINE_DEBUG)."""

import os
import subprocess
import sys

from tests.support import planted


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cs_pipeline.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def test_a_config_error_is_one_line_and_debug_shows_the_traceback(tmp_path):
    (tmp_path / "health_model.yaml").write_text("indicators: [\n")
    (tmp_path / "rules.yaml").write_text("rules: []\n")
    plain = cli("check-config", "--config", str(tmp_path))
    assert plain.returncode == 1 and len(plain.stderr.strip().splitlines()) == 1
    assert "health_model.yaml" in plain.stderr and "Traceback" not in plain.stderr
    debug = cli("check-config", "--config", str(tmp_path), "--debug")
    assert debug.returncode != 0 and "Traceback (most recent call last)" in debug.stderr


def test_a_code_location_that_does_not_load_is_one_line_without_a_dagster_traceback(tmp_path):
    planted.write(tmp_path / "data")
    (tmp_path / "dagster").mkdir()
    (tmp_path / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {"DAGSTER_HOME": str(tmp_path / "dagster"), "CS_PIPELINE_CRM_RECORD_URL": "ftp://crm/{crm_id}",
           "CS_PIPELINE_TODAY": planted.TODAY.isoformat()}
    day = planted.LAST.isoformat()
    done = cli("run", "--data-dir", str(tmp_path / "data"), "--from", day, "--to", day,
               "--warehouse", str(tmp_path / "w.duckdb"), env=env)
    assert done.returncode == 1, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr + done.stdout
    assert "did not load" in done.stderr and "CS_PIPELINE_CRM_RECORD_URL must be an http(s) URL" in done.stderr
