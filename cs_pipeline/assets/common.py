"""Small helpers the assets share for metadata."""


import dagster as dg
import polars as pl


def table_preview(frame: pl.DataFrame, rows: int = 10, columns: int = 12) -> dg.MetadataValue:
    """The first rows of a frame as Markdown, for the asset's page in the Dagster UI."""
    shown = frame.head(rows).select(frame.columns[:columns])
    if shown.height == 0:
        return dg.MetadataValue.md("(no rows)")
    header = "| " + " | ".join(shown.columns) + " |"
    rule = "|" + "---|" * len(shown.columns)
    body = [
        "| " + " | ".join("" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v)) for v in row) + " |"
        for row in shown.iter_rows()
    ]
    return dg.MetadataValue.md("\n".join([header, rule, *body]))
