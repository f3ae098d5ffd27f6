"""Pure logic, no Dagster: the rule language, config files, health scoring and alert episodes.

Everything here works on plain values and polars frames, so it is tested without an instance.
"""
