"""Dagster resources: the warehouse (DuckDB), Slack and the tasks sink."""
