"""Where source data comes from. The `files` source is the default (CONTRACT.md §1).

A source hands ingestion an `Extract` per entity (and per day for events): the contract's
columns, as text or already typed, with `source_file` naming where each row came from (a file,
a table, an endpoint) and, where it means something, `_line`. Validation, rejected rows and the
load itself are the same whatever the source.
"""

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import polars as pl

from cs_pipeline.logic.contract import ENTITIES, event_day_files, read_entity_file, read_event_file


@dataclass(frozen=True)
class Extract:
    frame: pl.DataFrame
    locations: list[str]


def empty_frame(entity: str) -> pl.DataFrame:
    return pl.DataFrame(schema={c: pl.String for c in ENTITIES[entity].column_names})


class FilesSource(dg.ConfigurableResource):
    """A directory in the contract's layout (`CS_PIPELINE_DATA_DIR`, default `data/demo`)."""

    data_dir: str

    def path(self) -> Path:
        path = Path(self.data_dir).resolve()
        if not path.is_dir():
            raise dg.Failure(
                description=f"source directory {path} does not exist: set CS_PIPELINE_DATA_DIR "
                "(or `cs-pipeline run --data-dir`) to a folder in the contract's layout, "
                "or run `cs-pipeline demo` to generate one"
            )
        return path

    def snapshot(self, entity: str) -> Extract | None:
        """The entity's full export, or None when an optional export is absent."""
        spec = ENTITIES[entity]
        frame = read_entity_file(self.path(), spec)
        return None if frame is None else Extract(frame, [str(self.path() / spec.file)])

    def events(self, day: dt.date) -> Extract:
        """Every file of the day's folder (none is an empty day, not an error)."""
        paths = event_day_files(self.path(), day)
        frames = [read_event_file(p) for p in paths]
        frame = pl.concat(frames, how="diagonal_relaxed") if frames else empty_frame("events")
        return Extract(frame, [str(p) for p in paths])
