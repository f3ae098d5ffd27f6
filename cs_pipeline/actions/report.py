"""The rule report: per rule, how CSMs acted on its alerts in Slack (or with the CLI).

An alert counts as useful when someone acknowledged it or marked it done, and as noise when it
was marked "not useful" (with the reason chosen); snoozes are counted apart. A rule with many
"not useful" marks and few useful ones is a candidate for a new threshold.
"""

from __future__ import annotations

import polars as pl

from cs_pipeline.actions.store import ActionsStore, alert_actions, tasks


def rules_report(store: ActionsStore) -> list[dict]:
    actions = store.frame(alert_actions)
    per_rule = store.frame(tasks).group_by("rule_id").agg(pl.len().alias("tasks"))
    marks = actions.group_by("rule_id").agg(
        *[pl.col("alert_id").filter(pl.col("action") == a).n_unique().alias(name)
          for a, name in (("ack", "acknowledged"), ("snooze", "snoozed"), ("done", "done"), ("not_useful", "not_useful"))],
        pl.col("reason").filter(pl.col("action") == "not_useful").drop_nulls().unique().sort().str.join("; ")
        .alias("not_useful_reasons"),
    )
    report = per_rule.join(marks, on="rule_id", how="full", coalesce=True).fill_null(0).with_columns(
        pl.col("not_useful_reasons").cast(pl.String).replace("0", ""),
    )
    rated = pl.col("acknowledged") + pl.col("done") + pl.col("not_useful")
    report = report.with_columns(
        pl.when(rated > 0).then(((pl.col("acknowledged") + pl.col("done")) / rated).round(2)).otherwise(None)
        .alias("useful_share")
    )
    return report.filter(pl.col("rule_id").is_not_null()).sort("rule_id").to_dicts()
