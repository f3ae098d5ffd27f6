"""Delighted: NPS survey responses.

`GET {base_url}/v1/survey_responses.json?per_page=100&page=N` from page 1 until an empty page
(dlt `rest_api`, `page_number` paginator), authenticated by HTTP basic auth with the API key as
the username and no password. Only `survey_type` responses (default `nps`) are kept: a Delighted
project can also run CSAT or CES surveys, whose scores are not NPS.

Who answered is in the person's properties, which the survey sender sets: by default
`person_properties.account_id` and `person_properties.user_id`; `person.email` and other
`person.` fields expand the person.

    delighted:
      type: delighted
      api_key_env: DELIGHTED_API_KEY
      fields: {account_id: "person_properties.Company ID"}
"""

import datetime as dt
import re
from typing import Any, ClassVar, Literal

from dlt.sources.helpers.rest_client.auth import HttpBasicAuth
from dlt.sources.helpers.rest_client.paginators import PageNumberPaginator
from pydantic import Field, field_validator, model_validator

from cs_pipeline.sources.base import Extract, secret
from cs_pipeline.sources.http import (
    ApiConnector,
    RowMapping,
    SourceObject,
    check_mappings,
    rows_frame,
    unix_time,
)

RESPONSES_PATH = "v1/survey_responses.json"

DEFAULT_FIELDS = {
    "response_id": "id",
    "account_id": "person_properties.account_id",
    "user_id": "person_properties.user_id",
    "score": "score",
    "comment": "comment",
    "submitted_at": "created_at",
}


class DelightedConnector(ApiConnector):
    """NPS responses from Delighted's survey responses API."""

    type: Literal["delighted"] = "delighted"
    entities: ClassVar[tuple[str, ...]] = ("nps_responses",)

    api_key_env: str = Field(description="environment variable holding the Delighted API key")
    base_url: str = "https://api.delighted.com"
    page_size: int = Field(100, ge=1, le=100)
    survey_type: str | None = Field("nps", description="keep responses of this survey type; null keeps all")
    since: int | dt.datetime | dt.date | None = Field(None, description="responses created since then")
    fields: dict[str, str] = {}
    values: dict[str, dict[str, str]] = {}

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"https?://", value):
            raise ValueError(f"'{value}' is not a URL such as https://api.delighted.com")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _check(self) -> "DelightedConnector":
        check_mappings("delighted", [("nps_responses", self.mapping())])
        return self

    def mapping(self) -> RowMapping:
        obj = SourceObject(object="survey_responses", fields=self.fields, values=self.values)
        return RowMapping.build("nps_responses", "delighted:survey_responses", DEFAULT_FIELDS, {}, obj)

    def snapshot(self, entity: str) -> Extract | None:
        if entity not in self.entities:
            return super().snapshot(entity)
        key = secret(self.api_key_env, "delighted", "api_key_env")
        api = self._api(
            self.base_url,
            HttpBasicAuth(key, ""),
            f"the API key in environment variable {self.api_key_env} (setting `api_key_env`)",
            [key],
            bad_request_hint="check `since` and `fields`",
        )
        mapping = self.mapping()
        params: dict[str, Any] = {"per_page": self.page_size}
        if any(path.startswith("person.") for path in mapping.paths()):
            params["expand[]"] = "person"
        if self.since is not None:
            params["since"] = unix_time(self.since)
        survey_type = self.survey_type
        resource = {
            "name": "responses",
            "endpoint": {
                "path": RESPONSES_PATH,
                "params": params,
                "paginator": PageNumberPaginator(base_page=1, page_param="page", total_path=None, stop_after_empty_page=True),
                "data_selector": "$",
            },
            "processing_steps": [
                {"filter": lambda r: survey_type is None or r.get("survey_type") in (None, survey_type)},
                {"map": mapping},
            ],
        }
        rows = api.read([resource])["responses"]
        return Extract(rows_frame("nps_responses", rows), [f"{self.base_url}/{RESPONSES_PATH}"])

