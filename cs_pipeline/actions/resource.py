"""The actions store as a Dagster resource."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from cs_pipeline.actions.store import ActionsStore


class ActionsResource(dg.ConfigurableResource):
    """The actions store: `url` from EnvVar('CS_PIPELINE_ACTIONS_URL'), else a SQLite file beside the warehouse."""

    url: str = Field(repr=False, description="SQLAlchemy URL of the actions store (may hold a password).")
    settle_seconds: float = Field(default=2.0, description="Wait before looking up a post whose answer was lost.")

    def store(self) -> ActionsStore:
        return ActionsStore(self.url)
