"""What every `cs-pipeline` command shares: its errors and exit codes, the common options, and
read-only access to the warehouse (queries, tables, JSON)."""

from __future__ import annotations

import argparse
import datetime as dt
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cs_pipeline import settings


class CliError(Exception):
    """Bad input or usage: a one-line message and exit code 2."""


class RunFailed(Exception):
    """A launched run failed: a one-line message (step, asset, cause) and exit code 1."""


# Exit codes (README, "Command line").
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_PROBLEMS, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def apply_common(args: argparse.Namespace) -> None:
    """--warehouse and --config reach the definitions through the environment, as in the Dagster UI."""
    if args.warehouse:
        os.environ["CS_PIPELINE_WAREHOUSE"] = str(Path(args.warehouse).resolve())
    if args.config:
        config = Path(args.config).resolve()
        if not config.is_dir():
            raise CliError(f"--config {config}: not a directory (it must hold health_model.yaml and rules.yaml)")
        os.environ["CS_PIPELINE_CONFIG_DIR"] = str(config)


def parse_day(value: str, option: str) -> dt.date:
    try:
        return settings.parse_date(value, option)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def existing_warehouse() -> Path:
    """The warehouse file; CliError when no run has written it yet."""
    path = settings.warehouse_path()
    if not path.exists():
        raise CliError(f"warehouse {path} does not exist: run `cs-pipeline demo` or `cs-pipeline run` first")
    return path


def connect(path: Path, read_only: bool = True):
    """A DuckDB connection; a warehouse held by a run is one line naming it (exit code 2)."""
    import duckdb

    try:
        return duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as error:
        if "lock" in str(error).lower():
            raise CliError(
                f"warehouse {path} is in use by another process (a Dagster run or another cs-pipeline command); "
                "retry when it has finished"
            ) from None
        raise CliError(f"cannot open warehouse {path}: {str(error).splitlines()[0]}") from None


def read(sql: str, params: Sequence[object] = (), needs: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Run a read-only query; no rows when a table it `needs` was never written."""

    from cs_pipeline.resources.warehouse import table_exists

    con = connect(existing_warehouse())
    try:
        if not all(table_exists(con, *name.split(".")) for name in needs):
            return []
        cursor = con.execute(sql, list(params))
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]
    finally:
        con.close()


def jsonable(rows: list[dict[str, Any]], fields: Sequence[str]) -> list[dict[str, Any]]:
    return [{f: (r[f].isoformat() if isinstance(r[f], dt.date) else r[f]) for f in fields} for r in rows]


def print_table(rows: list[dict[str, Any]], fields: Sequence[str]) -> None:
    if not rows:
        print("(none)")
        return
    text = [[str("" if r[f] is None else r[f]) for f in fields] for r in rows]
    widths = [max(len(f), *(len(t[i]) for t in text)) for i, f in enumerate(fields)]
    print("  ".join(f.ljust(w) for f, w in zip(fields, widths)))
    for t in text:
        print("  ".join(v.ljust(w) for v, w in zip(t, widths)))
