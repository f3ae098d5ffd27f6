"""Sensors read Dagster's event log and run storage only; never the warehouse."""
