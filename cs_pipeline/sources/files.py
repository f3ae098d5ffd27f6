"""The `files` source: a directory in the contract's layout (CONTRACT.md §1), the default."""

import datetime as dt
from pathlib import Path
from typing import ClassVar, Literal

import polars as pl

from cs_pipeline.logic.contract import ENTITIES, SourceFileError
from cs_pipeline.logic.exports import event_day_files, read_entity_file, read_event_file
from cs_pipeline.sources.base import Connector, ConnectorError, Extract, empty_frame


class FilesConnector(Connector):
    type: Literal["files"] = "files"
    data_dir: str
    entities: ClassVar[tuple[str, ...]] = tuple(ENTITIES)

    def path(self) -> Path:
        path = Path(self.data_dir).resolve()
        if not path.is_dir():
            raise ConnectorError(
                f"source directory {path} does not exist: set CS_PIPELINE_DATA_DIR "
                "(or `cs-pipeline run --data-dir`) to a folder in the contract's layout, "
                "or run `cs-pipeline demo` to generate one"
            )
        return path

    def snapshot(self, entity: str) -> Extract | None:
        """The entity's full export, or None when an optional export is absent."""
        spec = ENTITIES[entity]
        frame = read_entity_file(self.path(), spec)
        return None if frame is None else Extract(frame, [str(self.path() / spec.file)])

    def fingerprint(self, entity: str) -> dict[str, object]:
        """The export's path, size and modification time (ns): any rewrite of the file changes it."""
        path = self.path() / ENTITIES[entity].file
        if not path.exists():
            return {"path": str(path), "absent": True}
        stat = path.stat()
        return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}

    def events(self, day: dt.date) -> Extract:
        """Every file of the day's folder (none is an empty day, not an error)."""
        paths = event_day_files(self.path(), day)
        frames = [read_event_file(p) for p in paths]
        try:
            frame = pl.concat(frames, how="diagonal_relaxed") if frames else empty_frame("events")
        except pl.exceptions.PolarsError as error:  # one file's column type clashes with another's
            raise SourceFileError(paths[0].parent, f"its files cannot be combined: {str(error).splitlines()[0]}") from None
        return Extract(frame, [str(p) for p in paths])
