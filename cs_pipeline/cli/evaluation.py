"""`cs-pipeline backtest` and `cs-pipeline calibrate` (docs/backtest.md), and the demo's backtest headline.

They read the warehouse read-only through the functions the `health_backtest` asset uses, and
stop with `CliError` (one line, exit code 2) on input they cannot use.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

from cs_pipeline import settings
from cs_pipeline.cli.common import CliError, connect, existing_warehouse, parse_day, print_table, read

# Observation dates of calibration: every 10 days (the backtest reports every 15).
CALIBRATE_EVERY_DAYS = 10


def _evaluation_inputs(args: argparse.Namespace):
    """The spec, the model under test (from --config), its rules and a read-only warehouse connection."""
    from cs_pipeline.logic.backtest import BacktestError, BacktestSpec, parse_lead
    from cs_pipeline.logic.config import HEALTH_MODEL_FILE, RULES_FILE, ConfigError, load_health_model, load_rules

    try:
        low, high = parse_lead(args.lead)
        every = args.every if args.every is not None else (CALIBRATE_EVERY_DAYS if args.func is cmd_calibrate else 15)
        spec = BacktestSpec(parse_day(args.date_from, "--from"), parse_day(args.date_to, "--to"), every, low, high)
    except BacktestError as error:
        raise CliError(str(error)) from None
    config_dir = settings.config_dir()
    try:
        model = load_health_model(config_dir / HEALTH_MODEL_FILE)
        rules = load_rules(config_dir / RULES_FILE, model)
    except ConfigError as error:
        raise CliError(f"invalid model: {error}") from None
    return spec, model, rules, existing_warehouse()


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _print_backtest(result) -> None:
    spec = result.spec
    print(f"Backtest {spec.first} .. {spec.last}: {len(result.dates)} observation dates every {spec.every_days} days, "
          f"{result.observations:,} account-days of live accounts, {result.churners} of {result.accounts} accounts churned "
          f"{spec.lead_min}-{spec.lead_max} days after one of them")
    for note in result.notes:
        print(f"  note: {note}")
    print(f"\nAUC for churn {spec.lead_min}-{spec.lead_max} days ahead (0.5 = chance):")
    for name, value in result.auc.items():
        print(f"  {name:<24} {_fmt(value)}")
    print("\nChurn by band:")
    _print_frame(result.bands)
    print("\nBy segment:")
    _print_frame(result.segments)
    print("\nRules:")
    _print_frame(result.rules, 2)


def _print_frame(frame, digits: int = 3) -> None:
    print_table([{k: (_fmt(v, digits) if isinstance(v, float) else v) for k, v in r.items()} for r in frame.to_dicts()],
                frame.columns)


def cmd_backtest(args: argparse.Namespace) -> int:
    from cs_pipeline.assets.backtest import backtest
    from cs_pipeline.logic.backtest import BacktestError
    from cs_pipeline.logic.report import write_report

    spec, model, rules, path = _evaluation_inputs(args)
    con = connect(path)
    try:
        result = backtest(con, spec, model, settings.today(), [r.id for r in rules.rules])
    except BacktestError as error:
        raise CliError(str(error)) from None
    finally:
        con.close()
    if args.format == "json":
        print(json.dumps(result.summary(), indent=2))
    else:
        _print_backtest(result)
    if args.report:
        print(f"Report: {write_report(Path(args.report), result)}", file=sys.stderr if args.format == "json" else sys.stdout)
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    import shutil

    from cs_pipeline.assets.backtest import backtest, labelled_observations
    from cs_pipeline.logic.backtest import BacktestError
    from cs_pipeline.logic.calibrate import calibrate, to_yaml
    from cs_pipeline.logic.config import HEALTH_MODEL_FILE, RULES_FILE, ConfigError, load_health_model, load_rules
    from cs_pipeline.logic.report import write_report

    spec, model, rules, path = _evaluation_inputs(args)
    out = Path(args.out).resolve()
    config_dir = settings.config_dir().resolve()
    if out == config_dir / HEALTH_MODEL_FILE:
        raise CliError(f"--out {out} is the active model of --config; write the proposal elsewhere (--apply replaces it)")
    if args.apply and config_dir == settings.SHIPPED_CONFIG_DIR.resolve():
        raise CliError("--apply replaces the active health_model.yaml of --config DIR; the shipped one is part of the "
                       "package: copy cs_pipeline/config to a folder and pass --config FOLDER")
    con = connect(path)
    try:
        frame = labelled_observations(con, spec, model, settings.today())
        result = calibrate(frame, model, spec.lead_min, spec.lead_max)
        current = backtest(con, spec, model, settings.today(), [r.id for r in rules.rules]) if args.report else None
    except BacktestError as error:
        raise CliError(str(error)) from None
    finally:
        con.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(to_yaml(result, model, f"{path} {spec.first} .. {spec.last}"), encoding="utf-8")
    try:
        proposed = load_health_model(out)
        if not (out.parent / RULES_FILE).exists():
            shutil.copy(config_dir / RULES_FILE, out.parent / RULES_FILE)  # so the folder works with --config as is
        load_rules(out.parent / RULES_FILE, proposed)
    except ConfigError as error:
        raise CliError(f"the proposed model does not validate: {error}") from None
    a = result.auc_test
    print(f"Calibrated on {result.fit_dates[0]} .. {result.fit_dates[-1]} ({result.fit_churners} churned accounts), "
          f"tested on {result.test_dates[0]} .. {result.test_dates[-1]} ({result.test_churners})")
    if result.split_note:
        print(f"  note: {result.split_note}")
    print("AUC on the test period: " + ", ".join(f"{k} {_fmt(v)}" for k, v in a.items()))
    print("\nWhat changed:")
    for line in result.changes:
        print(f"  {line}")
    print(f"\nProposed model: {out} (use it with --config {out.parent})")
    if args.report and current is not None:
        print(f"Report: {write_report(Path(args.report), current, result)}")
    if args.apply:
        active = config_dir / HEALTH_MODEL_FILE
        backup = active.with_name(f"{HEALTH_MODEL_FILE}.{dt.datetime.now(dt.UTC):%Y%m%d%H%M%S}.bak")
        shutil.copy(active, backup)
        shutil.copy(out, active)
        print(f"Applied: {active} replaced (the previous one is {backup})")
    return 0


def backtest_headline() -> None:
    """The demo's last words: how early the default model and the rules were for churn
    (the health_backtest asset's tables), and what a calibrated model would reach."""
    from cs_pipeline.assets.backtest import health_days, labelled_observations
    from cs_pipeline.logic.backtest import BacktestError, BacktestSpec
    from cs_pipeline.logic.calibrate import calibrate
    from cs_pipeline.logic.config import HEALTH_MODEL_FILE, load_health_model

    aucs = dict((r["score"], r["auc"]) for r in read("SELECT score, auc FROM evaluation.backtest_auc", needs=("evaluation.backtest_auc",)))
    if not aucs:
        print("\nBacktest: not computed (too little history or no churn yet; see the health_backtest asset)")
        return
    print(f"\nBacktest (churn 30-90 days ahead): AUC of the health score {_fmt(aucs.get('model'))}, "
          f"days since last login {_fmt(aucs.get('days_since_last_login'))}, 30-day events {_fmt(aucs.get('events_30d'))}")
    con = connect(settings.warehouse_path())
    try:
        model = load_health_model(settings.config_dir() / HEALTH_MODEL_FILE)
        first, last = health_days(con)
        spec = BacktestSpec(first, last, every_days=CALIBRATE_EVERY_DAYS)  # as `cs-pipeline calibrate` samples
        calibration = calibrate(labelled_observations(con, spec, model, settings.today()), model)
        print(f"  calibrated on the earlier dates, AUC on the later ones: {_fmt(calibration.auc_test['calibrated'])} "
              f"(the default model there: {_fmt(calibration.auc_test['model'])}; `cs-pipeline calibrate` writes it)")
    except BacktestError as error:
        print(f"  calibrate: {error}")
    finally:
        con.close()
    rules = read("SELECT rule_id, alerts, precision, warned_share, median_lead_days FROM evaluation.backtest_rules "
                 "WHERE alerts > 0 ORDER BY rule_id", needs=("evaluation.backtest_rules",))
    for r in rules:
        print(f"  {r['rule_id']:<20} {r['alerts']:>5} alerts, precision {_fmt(r['precision'], 2)}, churners warned 30+ days "
              f"ahead {_fmt(r['warned_share'], 2)}, median lead {_fmt(r['median_lead_days'], 0)} days")
