"""HubSpot: companies → accounts, deals → contract terms, calls/emails/meetings/notes → activities,
and any CRM objects you name → engagements, through the CRM v3 objects API.

`GET {base_url}/crm/v3/objects/{object}?limit=100&properties=...&associations=companies`, paged by
the `after` cursor of `paging.next.after` (dlt `rest_api`, `cursor` paginator), authenticated by
a private-app token (`Authorization: Bearer`). Every read is a full read: the pipeline keeps
snapshots, so `hs_lastmodifieddate` increments would save little and lose deletions.

Field specs are property names, plus `id`, `createdAt`, `updatedAt` (the record's own),
`associated_company` (the id of the record's primary associated company) and
`owner:<property>` (the email of the owner whose id the property holds, from the owners API).
`filters` keep only records whose properties have the given values (default: closed-won deals).

    hubspot:
      type: hubspot
      token_env: HUBSPOT_TOKEN
      accounts: {fields: {licenses: seats, segment: cs_segment}}
      engagements:
        - {object: "2-1234567", fields: {engagement_id: id, account_id: associated_company,
           type: kind, occurred_at: happened_at}}
"""

import re
from collections.abc import Callable
from typing import Any, ClassVar, Literal

from dlt.sources.helpers.rest_client.auth import BearerTokenAuth
from dlt.sources.helpers.rest_client.paginators import JSONResponseCursorPaginator
from pydantic import Field, field_validator, model_validator

from cs_pipeline.sources.base import ConnectorError, Extract, secret
from cs_pipeline.sources.http import (
    Api,
    ApiConnector,
    RowMapping,
    SourceObject,
    check_mappings,
    dig,
    objects_of,
    rows_frame,
)

OWNER = "owner:hubspot_owner_id"
COMPANY = "associated_company"
RECORD_FIELDS = ("id", "createdAt", "updatedAt", "archived", COMPANY)

DEFAULT_OBJECT = {"accounts": "companies", "contracts": "deals"}

# HubSpot has no standard segment, plan, seats, customer status or contract dates: these defaults
# name custom properties that sources.yaml maps to the portal's own.
DEFAULT_FIELDS: dict[tuple[str, str], dict[str, str]] = {
    ("accounts", "companies"): {
        "account_id": "hs_object_id",
        "name": "name",
        "segment": "segment",
        "owner_email": OWNER,
        "plan": "plan",
        "licenses": "licenses",
        "status": "customer_status",
        "created_at": "createdate",
    },
    ("contracts", "deals"): {
        "contract_id": "hs_object_id",
        "account_id": COMPANY,
        "start_date": "contract_start_date",
        "end_date": "contract_end_date",
        "arr": "hs_arr",
    },
    **{
        ("activities", obj): {
            "activity_id": "hs_object_id",
            "account_id": COMPANY,
            "owner_email": OWNER,
            "type": f"={kind}",
            "occurred_at": "hs_meeting_start_time|hs_timestamp" if obj == "meetings" else "hs_timestamp",
        }
        for obj, kind in (("calls", "call"), ("emails", "email"), ("meetings", "meeting"), ("notes", "note"))
    },
}

# Only won deals are contract terms.
DEFAULT_FILTERS = {"deals": {"hs_is_closed_won": "true"}}


class HubSpotObject(SourceObject):
    """One CRM object type (`companies`, `deals`, `calls`, a custom object's `2-1234567`) that
    lands an entity: `fields`, `values`, and `filters` (property → value a record must have;
    absent: the object's default, `{}`: every record)."""

    filters: dict[str, str] | None = None

    @field_validator("object")
    @classmethod
    def _object(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_\-]+", value):
            raise ValueError(f"'{value}' is not a CRM object type such as companies, deals or 2-1234567")
        return value


Objects = objects_of(HubSpotObject)


def _no_owner(owner_id: Any) -> None:
    return None


class HubSpotConnector(ApiConnector):
    """Accounts, contracts, activities and engagements from HubSpot's CRM (v3 objects API)."""

    type: Literal["hubspot"] = "hubspot"
    entities: ClassVar[tuple[str, ...]] = ("accounts", "contracts", "activities", "engagements")

    token_env: str = Field(description="environment variable holding the private-app access token")
    base_url: str = "https://api.hubapi.com"
    page_size: int = Field(100, ge=1, le=100)
    accounts: Objects = (HubSpotObject(object="companies"),)
    contracts: Objects = (HubSpotObject(object="deals"),)
    activities: Objects = tuple(HubSpotObject(object=o) for o in ("calls", "emails", "meetings", "notes"))
    engagements: Objects = ()

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"https?://", value):
            raise ValueError(f"'{value}' is not a URL such as https://api.hubapi.com")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _mappings(self) -> "HubSpotConnector":
        for entity in self.entities:
            for obj in self._objects(entity):
                if obj.object is None:
                    raise ValueError(f"{entity}: every object needs `object` (a CRM object type such as calls)")
        check_mappings(
            "hubspot",
            (
                (f"{entity} ({obj.object})", self._mapping(entity, obj, _no_owner))
                for entity in self.entities
                for obj in self._objects(entity)
            ),
        )
        return self

    def _objects(self, entity: str) -> tuple[HubSpotObject, ...]:
        objects: tuple[HubSpotObject, ...] = getattr(self, entity)
        default = DEFAULT_OBJECT.get(entity)
        return tuple(o if o.object or not default else o.model_copy(update={"object": default}) for o in objects)

    def _mapping(self, entity: str, obj: HubSpotObject, owner_email: Callable[[Any], Any]) -> RowMapping:
        name = obj.object or ""
        return RowMapping.build(
            entity, f"hubspot:{name}", DEFAULT_FIELDS.get((entity, name), {}), {}, obj, {"owner": owner_email}
        )

    @staticmethod
    def _filters(obj: HubSpotObject) -> dict[str, str]:
        return obj.filters if obj.filters is not None else DEFAULT_FILTERS.get(obj.object or "", {})

    def snapshot(self, entity: str) -> Extract | None:
        if entity not in self.entities:
            return super().snapshot(entity)
        objects = self._objects(entity)
        if not objects:
            raise ConnectorError(
                f"hubspot: no CRM objects are configured for {entity}: list them under `{entity}:` "
                "in sources.yaml, each with `object` and the `fields` that map its properties"
            )
        token = secret(self.token_env, "hubspot", "token_env")
        api = self._api(
            self.base_url,
            BearerTokenAuth(token),
            f"the private-app token in environment variable {self.token_env} (setting `token_env`)",
            [token],
            bad_request_hint="check the object types and properties named in sources.yaml",
        )
        owners: dict[str, str] = {}
        mappings = [self._mapping(entity, obj, lambda owner_id: owners.get(str(owner_id))) for obj in objects]
        if any(m.uses("owner") for m in mappings):
            owners.update(self._owners(api))
        resources = [self._resource(f"object_{i}", obj, m) for i, (obj, m) in enumerate(zip(objects, mappings))]
        items = api.read(resources)
        rows = [row for i in range(len(objects)) for row in items.get(f"object_{i}", [])]
        return Extract(rows_frame(entity, rows), [f"{self.base_url}/crm/v3/objects/{obj.object}" for obj in objects])

    def _resource(self, name: str, obj: HubSpotObject, mapping: RowMapping) -> dict[str, Any]:
        filters = self._filters(obj)
        properties = [p for p in dict.fromkeys([*mapping.paths(), *filters]) if p.split(".")[0] not in RECORD_FIELDS]
        params: dict[str, Any] = {"limit": self.page_size, "archived": "false", "properties": ",".join(properties)}
        if any(p.split(".")[0] == COMPANY for p in mapping.paths()):
            params["associations"] = "companies"

        def keep(record: dict[str, Any]) -> bool:
            return all(str(dig(record, p) or "").lower() == str(v).lower() for p, v in filters.items())

        return {
            "name": name,
            "endpoint": {
                "path": f"crm/v3/objects/{obj.object}",
                "params": params,
                "paginator": _after_cursor(),
                "data_selector": "results",
            },
            "processing_steps": [{"map": flatten}, {"filter": keep}, {"map": mapping}],
        }

    def _owners(self, api: Api) -> dict[str, str]:
        """Owner id → email, from the owners API (active and archived owners)."""
        resources = [
            {
                "name": f"owners_{archived}",
                "endpoint": {
                    "path": "crm/v3/owners",
                    "params": {"limit": 100, "archived": archived},
                    "paginator": _after_cursor(),
                    "data_selector": "results",
                },
            }
            for archived in ("false", "true")
        ]
        found = api.read(resources)
        return {
            str(owner["id"]): owner["email"]
            for name in ("owners_true", "owners_false")  # an active owner wins over an archived one
            for owner in found.get(name, [])
            if owner.get("id") is not None and owner.get("email")
        }


def _after_cursor() -> JSONResponseCursorPaginator:
    return JSONResponseCursorPaginator(cursor_path="paging.next.after", cursor_param="after")


def flatten(record: dict[str, Any]) -> dict[str, Any]:
    """A CRM record as one flat mapping: its properties, its own fields, and its primary company."""
    companies = ((record.get("associations") or {}).get("companies") or {}).get("results") or []
    # Since the v4 associations, a primary company is listed twice: typed `..._to_company` and
    # `..._to_company_unlabeled`; prefer the typed one.
    primary = next((c for c in companies if not str(c.get("type", "")).endswith("unlabeled")), None)
    company = primary or (companies[0] if companies else None)
    return {
        **(record.get("properties") or {}),
        **{key: record.get(key) for key in RECORD_FIELDS[:-1]},
        COMPANY: company.get("id") if company else None,
    }
