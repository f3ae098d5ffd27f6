"""What failed in a run, in one or two lines: the step, its asset, and our own sentence (which names the file)."""

from __future__ import annotations

import re

import dagster as dg

MAX_STEPS_NAMED = 2


def cause_line(error) -> str:
    """The first line of the first error that is not Dagster's wrapping: the sentence our code raised.

    A step's error is Dagster's `DagsterExecutionStepExecutionError` caused by ours (say
    `SourceFileError: /data/events/date=…/part-0.parquet: cannot be read: …`), itself caused by the
    library's. Ours names the file; the library's innermost one does not.
    """
    node = error
    while node is not None and (node.cls_name or "").startswith("Dagster") and node.cause is not None:
        node = node.cause
    node = node or error
    lines = [line.strip() for line in (node.message or "").splitlines() if line.strip()]
    if not lines:
        return "unknown error"
    # Python's "module.ClassName: message" form: keep the message.
    return re.sub(rf"^[\w.]*{re.escape(node.cls_name or '')}: ", "", lines[0]) if node.cls_name else lines[0]


def step_assets(instance: dg.DagsterInstance, run: dg.DagsterRun) -> dict[str, list[str]]:
    """The assets each step of the run materializes, from its execution plan."""
    plan = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id) if run.execution_plan_snapshot_id else None
    if plan is None:
        return {}
    return {
        step.key: [o.properties.asset_key.to_user_string() for o in step.outputs if o.properties and o.properties.asset_key]
        for step in plan.steps
    }


def failure_summary(instance: dg.DagsterInstance, run: dg.DagsterRun, step_failures, run_message: str | None) -> str:
    """One line per failed step (at most two): `step raw__events (asset raw/events): <file>: <cause>`."""
    if not step_failures:
        return (run_message or "the run failed").strip().splitlines()[0]
    assets = step_assets(instance, run)
    lines = []
    for event in step_failures[:MAX_STEPS_NAMED]:
        produced = assets.get(event.step_key, [])
        what = f" (asset {produced[0]}{f' and {len(produced) - 1} more' if len(produced) > 1 else ''})" if produced else ""
        error = event.step_failure_data.error if event.step_failure_data else None
        lines.append(f"step {event.step_key}{what}: {cause_line(error) if error else 'failed'}")
    if len(step_failures) > MAX_STEPS_NAMED:
        lines[-1] += f" (and {len(step_failures) - MAX_STEPS_NAMED} more failed steps)"
    return "\n".join(lines)
