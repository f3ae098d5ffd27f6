"""Salesforce: accounts, contracts and activities (Tasks and Events) through the REST query API.

Each entity is read from one or more sObjects with a SOQL query built from its field mapping,
`GET {instance_url}/services/data/{api_version}/query?q=SELECT ... FROM ...`, following
`nextRecordsUrl` to the last page (dlt `rest_api` with a `json_link` paginator), authenticated
by an OAuth access token (`Authorization: Bearer`). Custom fields are the norm: every contract
column maps to a field path (`Licenses__c`, `Owner.Email`) that sources.yaml may change.

    salesforce:
      type: salesforce
      instance_url: https://acme.my.salesforce.com
      token_env: SALESFORCE_ACCESS_TOKEN
      accounts: {fields: {licenses: Seats__c, segment: Customer_Segment__c}}
      contracts: {where: "Status = 'Activated'"}
"""

import re
from typing import Any, ClassVar, Literal

from dlt.sources.helpers.rest_client.auth import BearerTokenAuth
from dlt.sources.helpers.rest_client.paginators import JSONLinkPaginator
from pydantic import Field, field_validator, model_validator

from cs_pipeline.sources.base import ConnectorError, Extract, secret
from cs_pipeline.sources.http import (
    ApiConnector,
    RowMapping,
    SourceObject,
    check_mappings,
    objects_of,
    rows_frame,
)

# The sObject an entity is read from when sources.yaml names none.
DEFAULT_OBJECT = {"accounts": "Account", "contracts": "Contract"}

# Contract column → field, per (entity, sObject). Fields ending in __c are the custom fields most
# orgs have under some name; sources.yaml maps them to the org's own.
DEFAULT_FIELDS: dict[tuple[str, str], dict[str, str]] = {
    ("accounts", "Account"): {
        "account_id": "Id",
        "name": "Name",
        "segment": "Segment__c",
        "owner_email": "Owner.Email",
        "plan": "Plan__c",
        "licenses": "Licenses__c",
        "status": "Status__c",
        "created_at": "CreatedDate",
    },
    ("contracts", "Contract"): {
        "contract_id": "Id",
        "account_id": "AccountId",
        "start_date": "StartDate",
        "end_date": "EndDate",
        "arr": "ARR__c",
    },
    # A Task's own type, else its subtype (what "Log a Call" or an email sets); when it happened:
    # completed, else due, else created.
    ("activities", "Task"): {
        "activity_id": "Id",
        "account_id": "AccountId",
        "owner_email": "Owner.Email",
        "type": "Type|TaskSubtype",
        "occurred_at": "CompletedDateTime|ActivityDate|CreatedDate",
    },
    # An Event without a type is a meeting on someone's calendar.
    ("activities", "Event"): {
        "activity_id": "Id",
        "account_id": "AccountId",
        "owner_email": "Owner.Email",
        "type": "Type|=meeting",
        "occurred_at": "StartDateTime|ActivityDateTime|ActivityDate",
    },
}

# Salesforce activity types and subtypes → the contract's activity types.
DEFAULT_VALUES: dict[str, dict[str, dict[str, str]]] = {
    "activities": {
        "type": {
            "Call": "call",
            "Email": "email",
            "List Email": "email",
            "ListEmail": "email",
            "Meeting": "meeting",
            "QBR": "qbr",
            "Business Review": "qbr",
            "Note": "note",
            "Task": "note",
            "Other": "note",
        }
    }
}


class SalesforceObject(SourceObject):
    """One sObject that lands an entity: `object` (API name), `fields`, `values`, and either a
    `where` condition for the generated query or a whole `soql` query. `query_all` reads through
    `queryAll`, which also returns archived activities (older than a year); the generated query
    then leaves out deleted rows (`IsDeleted = false`)."""

    where: str | None = None
    soql: str | None = None
    query_all: bool = False

    @model_validator(mode="after")
    def _one_query(self) -> "SalesforceObject":
        if self.where and self.soql:
            raise ValueError("give either `where` or a whole `soql` query, not both")
        if self.object is not None and not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", self.object):
            raise ValueError(f"'{self.object}' is not an sObject API name (such as Account or Renewal__c)")
        return self


Objects = objects_of(SalesforceObject)


class SalesforceConnector(ApiConnector):
    """Accounts, contracts and activities from a Salesforce org (REST API, SOQL)."""

    type: Literal["salesforce"] = "salesforce"
    entities: ClassVar[tuple[str, ...]] = ("accounts", "contracts", "activities")

    instance_url: str = Field(description="the org's URL, e.g. https://acme.my.salesforce.com")
    token_env: str = Field(description="environment variable holding the OAuth access token")
    api_version: str = "v59.0"
    batch_size: int | None = Field(None, ge=200, le=2000, description="records per page (Sforce-Query-Options)")
    accounts: Objects = (SalesforceObject(object="Account"),)
    contracts: Objects = (SalesforceObject(object="Contract"),)
    activities: Objects = (SalesforceObject(object="Task", where="IsClosed = true"), SalesforceObject(object="Event"))

    @field_validator("instance_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"https?://", value):
            raise ValueError(f"'{value}' is not a URL such as https://acme.my.salesforce.com")
        return value.rstrip("/")

    @field_validator("api_version")
    @classmethod
    def _version(cls, value: str) -> str:
        version = value if value.startswith("v") else f"v{value}"
        if not re.fullmatch(r"v\d+\.\d", version):
            raise ValueError(f"'{value}' is not an API version such as v59.0")
        return version

    @model_validator(mode="after")
    def _mappings(self) -> "SalesforceConnector":
        for entity in self.entities:
            for obj in self._objects(entity):
                if obj.object is None:
                    raise ValueError(f"{entity}: every object needs `object` (an sObject API name such as Task)")
        check_mappings(
            "salesforce",
            ((f"{entity} ({obj.object})", self._mapping(entity, obj)) for entity in self.entities for obj in self._objects(entity)),
        )
        return self

    def _objects(self, entity: str) -> tuple[SalesforceObject, ...]:
        objects: tuple[SalesforceObject, ...] = getattr(self, entity)
        default = DEFAULT_OBJECT.get(entity)
        return tuple(o if o.object or not default else o.model_copy(update={"object": default}) for o in objects)

    def _mapping(self, entity: str, obj: SalesforceObject) -> RowMapping:
        name = obj.object or ""
        return RowMapping.build(
            entity, f"salesforce:{name}", DEFAULT_FIELDS.get((entity, name), {}), DEFAULT_VALUES.get(entity, {}), obj
        )

    def soql(self, entity: str, obj: SalesforceObject) -> str:
        """The query for one object: the given `soql`, or the mapped fields with `where`."""
        if obj.soql:
            return obj.soql
        fields = list({path.lower(): path for path in self._mapping(entity, obj).paths()}.values())
        # queryAll is for archived activities; the deleted rows it also returns are never wanted.
        conditions = [f"({obj.where})" if obj.where and obj.query_all else obj.where, "IsDeleted = false" if obj.query_all else None]
        where = " AND ".join(c for c in conditions if c)
        where = f" WHERE {where}" if where else ""
        return f"SELECT {', '.join(fields)} FROM {obj.object}{where}"

    def snapshot(self, entity: str) -> Extract | None:
        if entity not in self.entities:
            return super().snapshot(entity)
        objects = self._objects(entity)
        if not objects:
            raise ConnectorError(f"salesforce: no objects are configured for {entity} (setting `{entity}`)")
        token = secret(self.token_env, "salesforce", "token_env")
        api = self._api(
            self.instance_url,
            BearerTokenAuth(token),
            f"the OAuth access token in environment variable {self.token_env} (setting `token_env`)",
            [token],
            headers={"Sforce-Query-Options": f"batchSize={self.batch_size}"} if self.batch_size else {},
            bad_request_hint="check the field mapping (`fields`, `where`, `soql`) against the org's objects and fields",
        )
        resources: list[dict[str, Any]] = [
            {
                "name": f"object_{i}",
                "endpoint": {
                    "path": f"services/data/{self.api_version}/{'queryAll' if obj.query_all else 'query'}",
                    "params": {"q": self.soql(entity, obj)},
                    "paginator": JSONLinkPaginator(next_url_path="nextRecordsUrl"),
                    "data_selector": "records",
                },
                "processing_steps": [{"map": self._mapping(entity, obj)}],
            }
            for i, obj in enumerate(objects)
        ]
        items = api.read(resources)
        rows = [row for i in range(len(objects)) for row in items.get(f"object_{i}", [])]
        return Extract(
            rows_frame(entity, rows),
            [f"{self.instance_url}/services/data/{self.api_version}/query ({obj.object})" for obj in objects],
        )
