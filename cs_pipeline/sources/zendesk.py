"""Zendesk Support: tickets through the cursor-based incremental export API.

`GET {base_url}/api/v2/incremental/tickets/cursor.json?start_time=<unix>` and then
`?cursor=<after_cursor>` until `end_of_stream` (dlt `rest_api` with a cursor paginator that
knows Zendesk's end of stream), authenticated by an API token (`{email}/token:{token}`, basic
auth; the export needs an admin). A ticket changed during the export can come twice: the latest
`updated_at` wins.

Zendesk's values become the contract's: statuses new/open → open, pending/hold → pending,
solved → resolved, closed → closed; priorities low/normal/high/urgent, none → normal;
`satisfaction_rating.score` good → 5, bad → 1, offered/unoffered → empty.

`account_id` is the ticket's `organization_id` by default; `organization.external_id` or
`organization.organization_fields.<key>` read the ticket's organization (sideloaded), and
`custom_fields.<field id>` a custom ticket field.

    zendesk:
      type: zendesk
      subdomain: acme
      email_env: ZENDESK_EMAIL
      token_env: ZENDESK_API_TOKEN
      fields: {account_id: organization.external_id}
"""

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any, ClassVar, Literal

import polars as pl
from dlt.sources.helpers.rest_client.auth import HttpBasicAuth
from dlt.sources.helpers.rest_client.paginators import JSONResponseCursorPaginator
from pydantic import Field, field_validator, model_validator
from requests import Request, Response

from cs_pipeline.logic.contract import normalise_timestamp
from cs_pipeline.sources.base import Extract, secret
from cs_pipeline.sources.http import (
    ApiConnector,
    RowMapping,
    SourceObject,
    check_mappings,
    rows_frame,
    unix_time,
)

EXPORT_PATH = "api/v2/incremental/tickets/cursor.json"

DEFAULT_FIELDS = {
    "ticket_id": "id",
    "account_id": "organization_id",
    "created_at": "created_at",
    "updated_at": "updated_at",
    "status": "status",
    "priority": "priority",
    "subject": "subject",
    "csat": "satisfaction_rating.score",
}
DEFAULT_VALUES = {
    "status": {"new": "open", "open": "open", "pending": "pending", "hold": "pending", "solved": "resolved", "closed": "closed"},
    "priority": {"": "normal"},
    "csat": {"good": "5", "bad": "1", "offered": "", "unoffered": ""},
}


class ZendeskCursorPaginator(JSONResponseCursorPaginator):
    """Zendesk's export cursor: `after_cursor` goes in `cursor` (which replaces `start_time`), and
    the export ends at `end_of_stream`, although `after_cursor` is always set (it is where the
    next export would start)."""

    def __init__(self) -> None:
        super().__init__(cursor_path="after_cursor", cursor_param="cursor")

    def update_state(self, response: Response, data: list[Any] | None = None) -> None:
        super().update_state(response, data)
        if response.json().get("end_of_stream", True):
            self._has_next_page = False

    def update_request(self, request: Request) -> None:
        super().update_request(request)
        request.params.pop("start_time", None)


class ZendeskConnector(ApiConnector):
    """Tickets from Zendesk Support (incremental ticket export, cursor based)."""

    type: Literal["zendesk"] = "zendesk"
    entities: ClassVar[tuple[str, ...]] = ("tickets",)

    subdomain: str | None = Field(None, description="acme for https://acme.zendesk.com")
    base_url: str | None = Field(None, description="instead of subdomain: the help desk's URL")
    email_env: str = Field(description="environment variable holding the email of the admin the token belongs to")
    token_env: str = Field(description="environment variable holding the API token")
    start_time: int | dt.datetime | dt.date = Field(0, description="tickets changed since then (Unix time or ISO date)")
    page_size: int = Field(1000, ge=1, le=1000)
    fields: dict[str, str] = {}
    values: dict[str, dict[str, str]] = {}

    @field_validator("subdomain")
    @classmethod
    def _subdomain(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9\-]*", value):
            raise ValueError(f"'{value}' is not a Zendesk subdomain (acme for https://acme.zendesk.com)")
        return value

    @model_validator(mode="after")
    def _check(self) -> "ZendeskConnector":
        if (self.subdomain is None) == (self.base_url is None):
            raise ValueError("give either `subdomain` (acme for https://acme.zendesk.com) or `base_url`")
        if self.base_url is not None and not re.match(r"https?://", self.base_url):
            raise ValueError(f"base_url '{self.base_url}' is not a URL such as https://acme.zendesk.com")
        check_mappings("zendesk", [("tickets", self.mapping())])
        return self

    @property
    def url(self) -> str:
        return (self.base_url or f"https://{self.subdomain}.zendesk.com").rstrip("/")

    def mapping(self) -> RowMapping:
        obj = SourceObject(object="tickets", fields=self.fields, values=self.values)
        return RowMapping.build("tickets", "zendesk:tickets", DEFAULT_FIELDS, DEFAULT_VALUES, obj)

    def snapshot(self, entity: str) -> Extract | None:
        if entity not in self.entities:
            return super().snapshot(entity)
        email = secret(self.email_env, "zendesk", "email_env")
        token = secret(self.token_env, "zendesk", "token_env")
        api = self._api(
            self.url,
            HttpBasicAuth(f"{email}/token", token),
            f"the API token in environment variable {self.token_env} (setting `token_env`) and the admin's "
            f"email in {self.email_env} (setting `email_env`)",
            [token],
            bad_request_hint="check `start_time` (at least a minute in the past) and `fields`",
        )
        mapping = self.mapping()
        params: dict[str, Any] = {"start_time": unix_time(self.start_time), "per_page": self.page_size, "exclude_deleted": "true"}
        if any(path.startswith("organization.") for path in mapping.paths()):
            params["include"] = "organizations"
        resource = {
            "name": "tickets",
            "endpoint": {
                "path": EXPORT_PATH,
                "params": params,
                "paginator": ZendeskCursorPaginator(),
                "data_selector": "$",  # the whole page: tickets and the organizations sideloaded with them
            },
            "processing_steps": [{"yield_map": tickets_of_page}, {"map": mapping}],
        }
        rows = api.read([resource])["tickets"]
        return Extract(latest_per_ticket(rows_frame("tickets", rows)), [f"{self.url}/{EXPORT_PATH}"])


def tickets_of_page(page: dict[str, Any]) -> Iterator[dict[str, Any]]:
    organizations = {org.get("id"): org for org in page.get("organizations") or []}
    for ticket in page.get("tickets") or []:
        yield {**ticket, "organization": organizations.get(ticket.get("organization_id"))}


def latest_per_ticket(frame: pl.DataFrame) -> pl.DataFrame:
    """One row per ticket id, its latest `updated_at` (the later row on a tie); rows without an id
    stay, for validation to reject."""
    ordered = frame.with_row_index("__order").sort(
        normalise_timestamp(pl.col("updated_at")), "__order", nulls_last=False, maintain_order=True
    )
    with_id = ordered.filter(pl.col("ticket_id").is_not_null()).unique("ticket_id", keep="last", maintain_order=True)
    without_id = ordered.filter(pl.col("ticket_id").is_null())
    return pl.concat([with_id, without_id]).sort("__order").drop("__order")
