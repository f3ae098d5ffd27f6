"""Where source data comes from. The `files` source is the default (CONTRACT.md §1)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg


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
