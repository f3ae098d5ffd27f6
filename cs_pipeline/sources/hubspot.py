"""HubSpot: companies → accounts, deals → contract terms, calls/emails/meetings/notes → activities,
and any CRM objects you name → engagements, through the CRM v3 objects API.

`GET {base_url}/crm/v3/objects/{object}?limit=100&properties=...&associations=companies`, paged by
the `after` cursor of `paging.next.after` (dlt `rest_api`, `cursor` paginator), authenticated by
a private-app token (`Authorization: Bearer`). Without `state_dir` every read is a full read.

With `state_dir`, each (entity, object) keeps a cache there: the mapped rows of its last full set
(parquet) and a cursor, the highest `hs_lastmodifieddate` seen (JSON). The first run (or one whose
cache is missing, made by another mapping, or older than `MAX_CACHE_AGE`) reads in full and writes
the cache. Later runs search for the records modified since the cursor
(`POST /crm/v3/objects/{object}/search`, `hs_lastmodifieddate GTE cursor - SEARCH_OVERLAP_MS`,
ascending), read their companies through the associations batch API (search answers carry no
associations), drop the ids of archived records (`GET ...?archived=true`), and merge by record id
into the cached rows. A search whose results pass HubSpot's 10,000-result paging cap falls back to
a full read. Caches are committed only after every object of the entity was read, the JSON last
(its atomic rename is the commit): a failure keeps the previous cache and cursor, and the next run
repeats the window (at-least-once, idempotent by id). `snapshot` always returns the full set.

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

import datetime as dt
import hashlib
import json
import os
import re
import tempfile
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import polars as pl
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
    pick,
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

MODIFIED = "hs_lastmodifieddate"
SEARCH_LIMIT = 10_000  # HubSpot's search pages no further than this many results of one query
SEARCH_OVERLAP_MS = 5 * 60 * 1000  # searched before the cursor too: the search index lags writes
MAX_CACHE_AGE = dt.timedelta(days=80)  # archived records are purged after 90 days, then unseen
ASSOCIATION_BATCH = 100
ID = "_hs_id"  # the record id, kept beside the mapped row in the cache
CACHE_VERSION = 1


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
    state_dir: str | None = Field(
        None,
        description="directory for the incremental caches (rows + hs_lastmodifieddate cursor per entity and object); "
        "unset: every read is a full read",
    )

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
        locations = [f"{self.base_url}/crm/v3/objects/{obj.object}" for obj in objects]
        if self.state_dir is None:
            resources = [self._resource(f"object_{i}", obj, m) for i, (obj, m) in enumerate(zip(objects, mappings))]
            items = api.read(resources)
            rows = [row for i in range(len(objects)) for row in items.get(f"object_{i}", [])]
            return Extract(rows_frame(entity, rows), locations)
        # Every object is read before any cache is committed: a failure changes no cache.
        reads = [self._incremental(api, entity, obj, m) for obj, m in zip(objects, mappings)]
        for read in reads:
            read.commit()
        frame = pl.concat([read.frame.drop(ID) for read in reads], how="vertical")
        return Extract(frame, locations)

    @staticmethod
    def _properties(obj: HubSpotObject, mapping: RowMapping) -> list[str]:
        filters = HubSpotConnector._filters(obj)
        return [p for p in dict.fromkeys([*mapping.paths(), *filters]) if p.split(".")[0] not in RECORD_FIELDS]

    @staticmethod
    def _keep(obj: HubSpotObject) -> Callable[[dict[str, Any]], bool]:
        filters = HubSpotConnector._filters(obj)

        def keep(record: dict[str, Any]) -> bool:
            return all(str(dig(record, p) or "").lower() == str(v).lower() for p, v in filters.items())

        return keep

    def _resource(self, name: str, obj: HubSpotObject, mapping: RowMapping, *, mapped: bool = True) -> dict[str, Any]:
        """The list read of one object; `mapped=False` yields flattened records (for the cache)."""
        params: dict[str, Any] = {"limit": self.page_size, "archived": "false", "properties": ",".join(self._properties(obj, mapping))}
        if _uses_company(mapping):
            params["associations"] = "companies"
        steps: list[dict[str, Any]] = [{"map": flatten}]
        if mapped:
            steps += [{"filter": self._keep(obj)}, {"map": mapping}]
        return {
            "name": name,
            "endpoint": {
                "path": f"crm/v3/objects/{obj.object}",
                "params": params,
                "paginator": _after_cursor(),
                "data_selector": "results",
            },
            "processing_steps": steps,
        }

    # --- incremental reads (state_dir) --------------------------------------------------------

    def _incremental(self, api: Api, entity: str, obj: HubSpotObject, mapping: RowMapping) -> "_Read":
        cache = _Cache(Path(self.state_dir or "."), entity, obj.object or "", self._fingerprint(entity, obj, mapping))
        state = cache.load()
        if state is not None:
            cached, cursor = state
            records = self._search(api, obj, mapping, cursor)
            if records is not None:
                changed, newest = self._keyed(entity, obj, mapping, records)
                gone = {*self._archived_ids(api, obj), *(str(r["id"]) for r in records)}
                kept = cached.filter(~pl.col(ID).is_in(sorted(gone)))
                merged = pl.concat([kept, changed], how="vertical")
                return _Read(cache, merged, max(c for c in (cursor, newest) if c is not None))
        items = api.read([self._resource("full", obj, mapping, mapped=False)])
        frame, newest = self._keyed(entity, obj, mapping, items.get("full", []))
        return _Read(cache, frame, newest)

    def _keyed(
        self, entity: str, obj: HubSpotObject, mapping: RowMapping, records: Iterable[dict[str, Any]]
    ) -> tuple[pl.DataFrame, int | None]:
        """Flattened records as mapped rows (those the filters keep) beside their ids, and the
        newest `hs_lastmodifieddate` among them (epoch ms)."""
        keep = self._keep(obj)
        rows: list[dict[str, str | None]] = []
        newest: int | None = None
        for record in records:
            modified = epoch_ms(pick(record, f"{MODIFIED}|updatedAt"))
            if modified is not None and (newest is None or modified > newest):
                newest = modified
            if keep(record):
                rows.append({**mapping(record), ID: str(record["id"])})
        frame = rows_frame(entity, [{k: v for k, v in r.items() if k != ID} for r in rows])
        return frame.with_columns(pl.Series(ID, [r[ID] for r in rows], dtype=pl.String)), newest

    def _search(self, api: Api, obj: HubSpotObject, mapping: RowMapping, cursor: int) -> list[dict[str, Any]] | None:
        """Flattened records modified since the cursor, with their companies; None when the search
        passes HubSpot's paging cap (the caller reads in full)."""
        body: dict[str, Any] = {
            "filterGroups": [{"filters": [{"propertyName": MODIFIED, "operator": "GTE", "value": str(cursor - SEARCH_OVERLAP_MS)}]}],
            "sorts": [{"propertyName": MODIFIED, "direction": "ASCENDING"}],
            "properties": list(dict.fromkeys([*self._properties(obj, mapping), MODIFIED])),
            "limit": self.page_size,
        }
        found: list[dict[str, Any]] = []
        while True:
            page = api.call("POST", f"crm/v3/objects/{obj.object}/search", json_body=body)
            if int(page.get("total") or 0) > SEARCH_LIMIT:
                return None
            found.extend(page.get("results") or [])
            after = dig(page, "paging.next.after")
            if not after:
                break
            if int(after) >= SEARCH_LIMIT:
                return None
            body["after"] = str(after)
        if found and _uses_company(mapping):
            companies = self._companies(api, obj, [str(r["id"]) for r in found])
            found = [{**r, "associations": {"companies": {"results": companies.get(str(r["id"]), [])}}} for r in found]
        return [flatten(r) for r in found]

    def _companies(self, api: Api, obj: HubSpotObject, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """Record id → its company associations `[{id, type}]` (associations batch read, v3)."""
        found: dict[str, list[dict[str, Any]]] = {}
        for start in range(0, len(ids), ASSOCIATION_BATCH):
            chunk = ids[start : start + ASSOCIATION_BATCH]
            answer = api.call(
                "POST", f"crm/v3/associations/{obj.object}/companies/batch/read", json_body={"inputs": [{"id": i} for i in chunk]}
            )
            for result in answer.get("results") or []:
                source = str(dig(result, "from.id"))
                found.setdefault(source, []).extend(result.get("to") or [])
        return found

    def _archived_ids(self, api: Api, obj: HubSpotObject) -> list[str]:
        resource = {
            "name": "archived",
            "endpoint": {
                "path": f"crm/v3/objects/{obj.object}",
                "params": {"limit": self.page_size, "archived": "true", "properties": "hs_object_id"},
                "paginator": _after_cursor(),
                "data_selector": "results",
            },
            "processing_steps": [{"map": lambda record: {"id": str(record.get("id"))}}],
        }
        return [r["id"] for r in api.read([resource]).get("archived", [])]

    def _fingerprint(self, entity: str, obj: HubSpotObject, mapping: RowMapping) -> str:
        """What the cached rows depend on: a cache made by another mapping is not reused."""
        config = {
            "version": CACHE_VERSION,
            "base_url": self.base_url,
            "entity": entity,
            "object": obj.object,
            "fields": dict(mapping.fields),
            "values": {k: dict(v) for k, v in mapping.values.items()},
            "filters": self._filters(obj),
        }
        return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()

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


@dataclass(frozen=True)
class _Cache:
    """One (entity, object) cache in `state_dir/hubspot/`: `<entity>.<object>.json` (the cursor,
    the mapping's fingerprint, the name of the rows file) and the rows file it names (parquet)."""

    root: Path
    entity: str
    object: str
    fingerprint: str

    @property
    def folder(self) -> Path:
        return self.root / "hubspot"

    @property
    def state_file(self) -> Path:
        return self.folder / f"{self.entity}.{self.object}.json"

    def load(self) -> tuple[pl.DataFrame, int] | None:
        """The cached rows and cursor, or None when a full read is due."""
        try:
            state = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(state, dict) or state.get("fingerprint") != self.fingerprint or state.get("cursor_ms") is None:
            return None
        try:
            written = dt.datetime.fromisoformat(state["written_at"])
            if dt.datetime.now(dt.UTC) - written > MAX_CACHE_AGE:
                return None
            frame = pl.read_parquet(self.folder / Path(state["rows_file"]).name)
        except (OSError, KeyError, TypeError, ValueError, pl.exceptions.PolarsError):
            return None
        return frame, int(state["cursor_ms"])

    def save(self, frame: pl.DataFrame, cursor: int | None) -> None:
        """Write the rows under a new name, then swap the JSON in (the commit), then drop older rows files."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            rows_file = f"{self.entity}.{self.object}.{uuid.uuid4().hex}.parquet"
            _atomic_write(self.folder / rows_file, lambda path: frame.write_parquet(path))
            state = {
                "version": CACHE_VERSION,
                "fingerprint": self.fingerprint,
                "cursor_ms": cursor,
                "cursor": None if cursor is None else dt.datetime.fromtimestamp(cursor / 1000, dt.UTC).isoformat(),
                "rows_file": rows_file,
                "rows": frame.height,
                "written_at": dt.datetime.now(dt.UTC).isoformat(),
            }
            _atomic_write(self.state_file, lambda path: Path(path).write_text(json.dumps(state, indent=2)))
        except OSError as exc:
            raise ConnectorError(f"hubspot: cannot write the incremental cache in {self.folder} (setting `state_dir`): {exc}") from None
        # Committed: the previous rows file, and any a crashed run left, are no longer named.
        for stale in self.folder.glob(f"{self.entity}.{self.object}.*.parquet"):
            if stale.name != rows_file:
                stale.unlink(missing_ok=True)


@dataclass(frozen=True)
class _Read:
    """One object's full current set (rows beside ids) and the cursor to commit with it."""

    cache: _Cache
    frame: pl.DataFrame
    cursor: int | None

    def commit(self) -> None:
        self.cache.save(self.frame, self.cursor)


def _atomic_write(target: Path, write: Callable[[str], Any]) -> None:
    handle, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(temp)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def epoch_ms(value: Any) -> int | None:
    """A HubSpot datetime (ISO-8601 or epoch milliseconds) as epoch milliseconds."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    if re.fullmatch(r"-?\d+(\.\d+)?", text):
        number = float(text)
        return int(number if abs(number) >= 1e11 else number * 1000)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


def _uses_company(mapping: RowMapping) -> bool:
    return any(p.split(".")[0] == COMPANY for p in mapping.paths())


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
