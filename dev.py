#!/usr/bin/env python3
"""Set up and run cs_pipeline from a clone with nothing but Python 3.11+.

    python3 dev.py demo     # create .venv, install, run the demo end to end
    python3 dev.py test     # create .venv, install, run the test suite
    python3 dev.py ui       # create .venv, install, open the Dagster UI (dagster dev)

The virtual environment is created once and reinstalled only when pyproject.toml or
constraints.txt (the exact versions tested) change.
Any further arguments are passed on (to `cs-pipeline demo`, `pytest` or `dagster dev`).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".cs_pipeline-installed"


def _run(*command: str | Path, env: dict[str, str] | None = None) -> int:
    return subprocess.call([str(c) for c in command], cwd=ROOT, env=env)


def ensure_environment() -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"cs_pipeline needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + (ROOT / "constraints.txt").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == wanted:
        return
    if not (BIN / "python").exists():
        print(f"Creating the virtual environment {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("Installing cs_pipeline and its dependencies (first time: a minute or two)", flush=True)
    pip = [BIN / "python", "-m", "pip", "install", "--disable-pip-version-check", "--quiet"]
    if _run(*pip, "--upgrade", "pip") != 0 or _run(*pip, "-c", "constraints.txt", "-e", ".[dev]") != 0:
        sys.exit("installing the dependencies failed (see pip's output above)")
    STAMP.write_text(wanted)


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = str(BIN) + os.pathsep + env.get("PATH", "")
    env.setdefault("DAGSTER_HOME", str(ROOT))
    return env


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"demo", "test", "ui"}:
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    ensure_environment()
    env = environment()
    if command == "demo":
        return _run(BIN / "cs-pipeline", "demo", *rest, env=env)
    if command == "ui":
        return _run(BIN / "dagster", "dev", *rest, env=env)
    # Parse the dbt project once, so parallel test workers do not race to write its manifest.
    if _run(BIN / "python", "-c", "from cs_pipeline.assets.dbt import prepare_manifest; prepare_manifest()", env=env) != 0:
        return 1
    return _run(BIN / "python", "-m", "pytest", *(rest or ["-q", "-n", "2", "--dist", "loadfile"]), env=test_environment(env))


def test_environment(env: dict[str, str]) -> dict[str, str]:
    """The tests' temporary files (DuckDB warehouses, Dagster's SQLite storage) on a RAM disk when
    there is one with room: the suite writes thousands of small SQLite transactions, and on a busy
    disk each fsync costs 4x what it costs in memory. Set TMPDIR yourself to choose otherwise."""
    shm = Path("/dev/shm")
    if "TMPDIR" in env or not shm.is_dir() or not os.access(shm, os.W_OK):
        return env
    stats = os.statvfs(shm)
    if stats.f_bavail * stats.f_frsize < 4 * 1024**3:
        return env
    tmp = shm / "cs_pipeline-tests"
    tmp.mkdir(exist_ok=True)
    return {**env, "TMPDIR": str(tmp)}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
