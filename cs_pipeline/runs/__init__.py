"""Launching runs through the instance and code location, and recovering from runs whose process died."""
