"""cs_pipeline: early alerts for Customer Success teams, as a Dagster project."""

__version__ = "0.1.0"
