"""Loopback fakes of the SaaS APIs the connectors read: Salesforce, HubSpot, Zendesk, Delighted.

    with SalesforceServer({"Account": [{"Id": "001A", "Name": "Acme", ...}]}, page_size=2) as server:
        connector = SalesforceConnector(instance_url=server.url, token_env="SF_TOKEN")
        ...
        assert server.calls("/query") == 3

Each answers the requests a connector makes with the shapes of the real API (paths, query
parameters, paging, authentication and error bodies), and checks what the real API checks where a
client could get it wrong: the credentials, page sizes, unknown fields and objects, cursors.
`fail_next(n, kind)` injects the faults a real connection sees: rate limits with `Retry-After`,
server errors, answers that never come (timeouts), revoked or insufficient credentials.

They only listen on 127.0.0.1 on a free port, serve from a daemon thread, bound held connections,
and stop when the `with` block ends.
"""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import json
import re
import threading
import time
from collections import deque
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.support.loopback import JsonHandler, LoopbackServer

FAULT_KINDS = ("rate_limited", "server_error", "timeout", "unauthorized", "forbidden")
FAULT_STATUS = {"rate_limited": 429, "server_error": 500, "unauthorized": 401, "forbidden": 403}
MAX_HOLD_SECONDS = 30.0

Answer = tuple[int, Any]  # HTTP status and JSON body


class FakeApi(LoopbackServer):
    """What every fake shares: lifecycle, fault injection, the request log. Subclasses implement
    `authorized(headers)`, `error_body(status)` and `route(path, query, headers)`."""

    name = "api"

    def __init__(self, *, retry_after: str | None = "1", hold_seconds: float = 2.0) -> None:
        """
        retry_after: the `Retry-After` header of a `rate_limited` fault (None: no header).
        hold_seconds: how long a `timeout` fault keeps the connection open without answering.
        """
        super().__init__()
        self.retry_after = retry_after
        self.hold_seconds = min(hold_seconds, MAX_HOLD_SECONDS)
        self.requests: list[dict[str, Any]] = []  # {path, query, outcome}, in arrival order
        self._faults: deque[str] = deque()
        self._lock = threading.Lock()

    handler_attribute = "api"

    @property
    def url(self) -> str:
        """The base URL to give the connector (no trailing slash)."""
        return self.base_url

    @property
    def thread_name(self) -> str:  # type: ignore[override]
        return f"{self.name}-server"

    # ------------------------------------------------------------------ test controls

    def fail_next(self, n: int = 1, kind: str = "rate_limited") -> None:
        """Make the next `n` requests fail with `kind`:

        rate_limited: HTTP 429 with `Retry-After` (see `retry_after`) and the API's error body.
        server_error: HTTP 500 with the API's error body.
        timeout: the connection stays open without an answer for `hold_seconds`, then closes.
        unauthorized: HTTP 401, as for a revoked or wrong token.
        forbidden: HTTP 403, as for credentials without the permission or scope.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; choose one of {', '.join(FAULT_KINDS)}")
        with self._lock:
            self._faults.extend([kind] * n)

    def calls(self, path_part: str = "") -> int:
        """How many requests had `path_part` in their path, including the ones that failed."""
        with self._lock:
            return sum(1 for request in self.requests if path_part in request["path"])

    # ------------------------------------------------------------------ for subclasses

    def authorized(self, headers) -> bool:
        raise NotImplementedError

    def error_body(self, status: int) -> Any:
        raise NotImplementedError

    def route(self, path: str, query: dict[str, list[str]], headers) -> Answer:
        raise NotImplementedError

    def route_post(self, path: str, query: dict[str, list[str]], body: Any, headers) -> Answer:
        return 405, {"message": f"POST is not supported on {path}"}

    def _next_fault(self) -> str | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def _log(self, path: str, query: dict[str, list[str]], outcome: int | str, method: str = "GET", body: Any = None) -> None:
        with self._lock:
            self.requests.append({"path": path, "query": query, "outcome": outcome, "method": method, "body": body})


class _Handler(JsonHandler):
    api: FakeApi
    wbufsize = 64 * 1024  # headers and body leave in one write (no Nagle/delayed-ACK stall per answer)

    def do_GET(self):
        self._serve("GET")

    def do_POST(self):
        self._serve("POST")

    def _serve(self, method: str):
        split = urlsplit(self.path)
        path, query = split.path, parse_qs(split.query, keep_blank_values=True)
        sent: Any = None
        if method == "POST":
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                sent = json.loads(raw or b"null")
            except ValueError:
                sent = raw.decode("utf-8", "replace")

        def log(outcome):
            self.api._log(path, query, outcome, method, sent)

        fault = self.api._next_fault()
        if fault == "timeout":
            log(fault)
            self.api._stopping.wait(self.api.hold_seconds)
            self.close_connection = True
            return
        if fault is not None:
            log(fault)
            status = FAULT_STATUS[fault]
            headers = {"Retry-After": self.api.retry_after} if fault == "rate_limited" and self.api.retry_after else {}
            return self._reply(status, self.api.error_body(status), headers)
        if not self.api.authorized(self.headers):
            log(401)
            return self._reply(401, self.api.error_body(401))
        if method == "POST":
            status, body = self.api.route_post(path, query, sent, self.headers)
        else:
            status, body = self.api.route(path, query, self.headers)
        log(status)
        return self._reply(status, body)



def _bearer(headers) -> str | None:
    value = headers.get("Authorization") or ""
    return value[len("Bearer ") :].strip() if value.startswith("Bearer ") else None


def _basic(headers) -> tuple[str, str] | None:
    value = headers.get("Authorization") or ""
    if not value.startswith("Basic "):
        return None
    try:
        user, _, password = base64.b64decode(value[len("Basic ") :]).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return user, password


def _one(query: dict[str, list[str]], name: str, default: str | None = None) -> str | None:
    values = query.get(name)
    return values[-1] if values else default


# --- Salesforce ----------------------------------------------------------------------------------

_SOQL = re.compile(r"^\s*SELECT\s+(?P<fields>.+?)\s+FROM\s+(?P<object>\w+)(?:\s+WHERE\s+(?P<where>.+?))?\s*$", re.IGNORECASE | re.DOTALL)
_CONDITION = re.compile(r"^\s*(?P<field>[\w.]+)\s*(?P<op>=|!=)\s*(?P<value>'(?:[^'\\]|\\.)*'|true|false|null|-?\d+(?:\.\d+)?)\s*$", re.IGNORECASE)


FakeApi.handler_class = _Handler  # defined after the class it serves


class SalesforceServer(FakeApi):
    """The REST query API of one org: `GET /services/data/vXX.X/query?q=SOQL` (and `queryAll`),
    then `GET /services/data/vXX.X/query/<locator>-<offset>` for the next pages.

    `objects`: sObject API name → records, field name → value, a relationship as a nested record
    (`{"Owner": {"Email": ...}}`). An object's fields are those its records have (and `Id`); a
    query naming another gets `INVALID_FIELD`, as a misspelt custom field does in a real org.
    WHERE supports `Field = literal` and `!=`, joined by AND, a clause optionally in parentheses.
    Records with `IsDeleted: true` or `IsArchived: true` only come back from `queryAll`.
    """

    name = "salesforce"

    def __init__(
        self, objects: dict[str, list[dict[str, Any]]], token: str = "00Dtest!sf-access-token", page_size: int = 2000, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.objects = {name: [{"IsDeleted": False, **r} for r in records] for name, records in objects.items()}
        self.token = token
        self.page_size = page_size
        self.queries: list[str] = []  # every SOQL query received
        self._cursors: dict[str, tuple[int, list[dict[str, Any]], int]] = {}  # locator → (total, records, batch)
        self._locators = itertools.count(1)

    def authorized(self, headers) -> bool:
        return _bearer(headers) == self.token

    def error_body(self, status: int) -> Any:
        return {
            401: [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}],
            403: [{"message": "The REST API is not enabled for this Organization.", "errorCode": "API_DISABLED_FOR_ORG"}],
            429: [{"message": "Too many concurrent requests.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
            500: [{"message": "An unexpected error occurred. Please include this ErrorId if you contact support: "
                   "1234567890-12345 (-1234567890)", "errorCode": "UNKNOWN_EXCEPTION"}],
        }.get(status, [{"message": "error", "errorCode": "UNKNOWN_EXCEPTION"}])

    def route(self, path: str, query: dict[str, list[str]], headers) -> Answer:
        match = re.fullmatch(r"/services/data/(v\d+\.\d)/(query|queryAll)(?:/(?P<locator>[\w]+)-(?P<offset>\d+))?", path)
        if not match:
            return 404, [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]
        version = match.group(1)
        if match.group("locator"):
            return self._next_page(version, match.group("locator"), int(match.group("offset")))
        soql = _one(query, "q")
        if not soql:
            return 400, [{"message": "A query string must be provided.", "errorCode": "MALFORMED_QUERY"}]
        self.queries.append(soql)
        batch = self._batch_size(headers)
        try:
            records = self._run(soql, include_deleted=match.group(2) == "queryAll", version=version)
        except _SoqlError as error:
            return 400, [{"message": error.message, "errorCode": error.code}]
        locator = f"01gD{next(self._locators):014d}"
        self._cursors[locator] = (len(records), records, batch)
        return 200, self._page(version, locator, 0)

    def _batch_size(self, headers) -> int:
        options = headers.get("Sforce-Query-Options") or ""
        asked = re.search(r"batchSize=(\d+)", options)
        return min(self.page_size, int(asked.group(1)) if asked else 2000)

    def _next_page(self, version: str, locator: str, offset: int) -> Answer:
        if locator not in self._cursors or offset >= self._cursors[locator][0]:
            return 400, [{"message": "invalid query locator", "errorCode": "INVALID_QUERY_LOCATOR"}]
        return 200, self._page(version, locator, offset)

    def _page(self, version: str, locator: str, offset: int) -> dict[str, Any]:
        total, records, batch = self._cursors[locator]
        end = offset + batch
        page: dict[str, Any] = {"totalSize": total, "done": end >= total, "records": records[offset:end]}
        if end < total:
            page["nextRecordsUrl"] = f"/services/data/{version}/query/{locator}-{end}"
        return page

    def _run(self, soql: str, include_deleted: bool, version: str) -> list[dict[str, Any]]:
        match = _SOQL.match(soql)
        if not match:
            raise _SoqlError("MALFORMED_QUERY", f"unexpected token: '{soql[:40]}'")
        name = match.group("object")
        canonical = {n.lower(): n for n in self.objects}
        if name.lower() not in canonical:
            raise _SoqlError(
                "INVALID_TYPE",
                f"\n{soql}\n^\nERROR at Row:1:Column:1\nsObject type '{name}' is not supported. If you are attempting "
                "to use a custom object, be sure to append the '__c' after the entity name.",
            )
        name = canonical[name.lower()]
        records = self.objects[name]
        fields = [f.strip() for f in match.group("fields").split(",")]
        for field in fields:
            if self._field_path(name, field) is None:
                raise _SoqlError(
                    "INVALID_FIELD",
                    f"\n{soql}\n^\nERROR at Row:1:Column:8\nNo such column '{field}' on entity '{name}'. If you are "
                    "attempting to use a custom field, be sure to append the '__c' after the custom field name.",
                )
        conditions = self._conditions(name, match.group("where"))
        chosen = [
            r for r in records
            if (include_deleted or not (r.get("IsDeleted") or r.get("IsArchived"))) and all(test(r) for test in conditions)
        ]
        return [self._project(name, version, r, fields) for r in chosen]

    def _known(self, records: list[dict[str, Any]]) -> dict[str, str]:
        keys = {"Id", *itertools.chain.from_iterable(r.keys() for r in records)} - {"attributes"}
        return {k.lower(): k for k in keys}

    def _field_path(self, name: str, field: str) -> list[str] | None:
        """The canonical path of `field` (`owner.email` → [Owner, Email]), or None if unknown."""
        records = self.objects[name]
        parts = field.split(".")
        path: list[str] = []
        for i, part in enumerate(parts):
            known = self._known(records)
            if part.lower() not in known:
                return None
            path.append(known[part.lower()])
            if i < len(parts) - 1:  # a relationship: the next part is a field of the related records
                records = [r[path[-1]] for r in records if isinstance(r.get(path[-1]), dict)]
                if not records:
                    return None
        return path

    def _conditions(self, name: str, where: str | None) -> list:
        tests = []
        for clause in re.split(r"\s+AND\s+", where or "", flags=re.IGNORECASE) if where else []:
            match = _CONDITION.match(clause.strip().removeprefix("(").removesuffix(")"))
            path = self._field_path(name, match.group("field")) if match else None
            if not match or path is None:
                raise _SoqlError("MALFORMED_QUERY", f"unexpected token: '{clause.strip()}'")
            literal = match.group("value")
            lowered = literal.lower()
            if literal.startswith("'"):
                value: Any = literal[1:-1]
            elif lowered in ("true", "false"):
                value = lowered == "true"
            elif lowered == "null":
                value = None
            else:
                value = float(literal)
            equal = match.group("op") == "="
            tests.append(lambda r, path=path, value=value, equal=equal: (_dig(r, path) == value) == equal)
        return tests

    def _project(self, name: str, version: str, record: dict[str, Any], fields: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {"attributes": {"type": name, "url": f"/services/data/{version}/sobjects/{name}/{record.get('Id')}"}}
        for field in fields:
            path = self._field_path(name, field) or []
            source, target, kind = record, out, name
            for i, part in enumerate(path):
                value = source.get(part) if isinstance(source, dict) else None
                if i == len(path) - 1:
                    target[part] = value
                elif value is None:
                    target[part] = None
                    break
                else:
                    kind = (value.get("attributes") or {}).get("type", part)
                    if not isinstance(target.get(part), dict):
                        target[part] = {"attributes": {"type": kind, "url": f"/services/data/{version}/sobjects/{kind}/{value.get('Id', '')}"}}
                    source, target = value, target[part]
        return out


class _SoqlError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _dig(record: dict[str, Any], path: list[str]) -> Any:
    for part in path:
        record = record.get(part) if isinstance(record, dict) else None
    return record


# --- HubSpot -------------------------------------------------------------------------------------

_HUBSPOT_ALWAYS = ("hs_object_id", "createdate", "hs_lastmodifieddate")


class HubSpotServer(FakeApi):
    """CRM v3: `GET /crm/v3/objects/{type}?limit&after&properties&associations&archived` and
    `GET /crm/v3/owners?limit&after&archived`, paged by `paging.next.after`;
    `POST /crm/v3/objects/{type}/search` (filterGroups, sorts, properties, limit, after; `total`;
    no associations, as HubSpot's search; paging stops at `search_cap`, 10,000 as HubSpot's);
    `POST /crm/v3/associations/{from}/{to}/batch/read` (`{"inputs": [{"id"}]}`, 207 when some
    ids have none).

    `objects`: object type → records `{"id", "properties": {...}, "companies": [ids],
    "createdAt", "updatedAt", "archived"}` (the fake builds the API's `associations`);
    `hs_lastmodifieddate` is `updatedAt` (default 2024-01-01). Property values come back as
    strings; a property a record lacks is left out, as HubSpot does. `page_size` caps every page
    below the client's `limit` (max 100, as HubSpot's). Between reads, `modify`, `add` and
    `archive` change records the way a user does, moving `updatedAt` forward.
    """

    name = "hubspot"

    def __init__(
        self,
        objects: dict[str, list[dict[str, Any]]],
        owners: list[dict[str, Any]] = (),
        token: str = "pat-na1-11111111-2222-3333-4444-555555555555",
        page_size: int = 100,
        search_cap: int = 10_000,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.objects = {
            kind: [{**r, "updatedAt": r.get("updatedAt") or "2024-01-01T00:00:00.000Z"} for r in records]
            for kind, records in objects.items()
        }
        self.owners = list(owners)
        self.token = token
        self.page_size = page_size
        self.search_cap = search_cap
        self.broken_search: tuple[int, int] | None = None  # (after, status): search pages from there fail
        self._clock = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)

    # ------------------------------------------------------------------ test controls

    def _tick(self) -> str:
        """A modification time after every earlier one (ISO, milliseconds, as HubSpot's)."""
        self._clock += dt.timedelta(minutes=10)
        return self._clock.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def find(self, kind: str, id_: str) -> dict[str, Any]:
        return next(r for r in self.objects[kind] if str(r["id"]) == str(id_))

    def modify(self, kind: str, id_: str, **properties: Any) -> None:
        record = self.find(kind, id_)
        record["properties"] = {**record.get("properties", {}), **properties}
        record["updatedAt"] = self._tick()

    def add(self, kind: str, record: dict[str, Any]) -> None:
        self.objects[kind].append({**record, "updatedAt": self._tick()})

    def archive(self, kind: str, id_: str) -> None:
        record = self.find(kind, id_)
        record["archived"] = True
        record["updatedAt"] = self._tick()

    def break_search(self, after: int | None, status: int = 500) -> None:
        """Make every search page from `after` on fail with `status` (None: search works again),
        as a search that breaks half-way through its pages."""
        self.broken_search = None if after is None else (after, status)

    def searches(self) -> list[dict[str, Any]]:
        """The bodies of the search requests received."""
        with self._lock:
            return [r["body"] for r in self.requests if r["path"].endswith("/search")]

    # ------------------------------------------------------------------ API

    def authorized(self, headers) -> bool:
        return _bearer(headers) == self.token

    def error_body(self, status: int) -> Any:
        correlation = "9d1b5f2e-1c3a-4f6e-8b7d-0a1b2c3d4e5f"
        return {
            401: {"status": "error", "message": "Authentication credentials not found. This API supports OAuth 2.0 "
                  "authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
                  "correlationId": correlation, "category": "INVALID_AUTHENTICATION"},
            403: {"status": "error", "message": "This app hasn't been granted all required scopes to make this call.",
                  "correlationId": correlation, "category": "MISSING_SCOPES",
                  "errors": [{"message": "One or more of the following scopes are required.",
                              "context": {"requiredGranularScopes": ["crm.objects.companies.read"]}}]},
            429: {"status": "error", "message": "You have reached your secondly limit.", "errorType": "RATE_LIMIT",
                  "correlationId": correlation, "policyName": "SECONDLY"},
            500: {"status": "error", "message": "internal error", "correlationId": correlation, "category": "INTERNAL_ERROR"},
        }.get(status, {"status": "error", "message": "error", "correlationId": correlation})

    def route(self, path: str, query: dict[str, list[str]], headers) -> Answer:
        limit = int(_one(query, "limit", "10") or 10)
        if not 1 <= limit <= 100:
            return 400, {"status": "error", "message": f"limit must be between 1 and 100, got {limit}",
                         "correlationId": "x", "category": "VALIDATION_ERROR"}
        after = int(_one(query, "after", "0") or 0)
        archived = _one(query, "archived", "false") == "true"
        if path == "/crm/v3/owners":
            owners = [o for o in self.owners if bool(o.get("archived")) == archived]
            return 200, self._page(path, query, owners, after, limit, lambda o: o)
        match = re.fullmatch(r"/crm/v3/objects/([\w\-]+)", path)
        if not match:
            return 404, {"status": "error", "message": "Not found", "correlationId": "x", "category": "OBJECT_NOT_FOUND"}
        kind = match.group(1)
        if kind not in self.objects:
            return 400, {"status": "error", "message": f"Unable to infer object type from: {kind}",
                         "correlationId": "x", "category": "VALIDATION_ERROR"}
        properties = [p for value in query.get("properties", []) for p in value.split(",") if p]
        associations = [a for value in query.get("associations", []) for a in value.split(",") if a]
        records = [r for r in self.objects[kind] if bool(r.get("archived")) == archived]
        return 200, self._page(path, query, records, after, limit, lambda r: self._record(kind, r, properties, associations))

    def route_post(self, path: str, query: dict[str, list[str]], body: Any, headers) -> Answer:
        def invalid(message: str) -> Answer:
            return 400, {"status": "error", "message": message, "correlationId": "x", "category": "VALIDATION_ERROR"}

        if not isinstance(body, dict):
            return invalid("Invalid input JSON")
        match = re.fullmatch(r"/crm/v3/associations/([\w\-]+)/([\w\-]+)/batch/read", path)
        if match:
            kind, to = match.groups()
            if kind not in self.objects:
                return invalid(f"Unable to infer object type from: {kind}")
            wanted = [str(i.get("id")) for i in body.get("inputs") or []]
            records = {str(r["id"]): r for r in self.objects[kind]}
            results, missing = [], []
            for id_ in wanted:
                linked = (records.get(id_) or {}).get(to) or []
                if linked:
                    results.append({"from": {"id": id_}, "to": self._companies(kind, linked)})
                else:
                    missing.append(id_)
            answer: dict[str, Any] = {"status": "COMPLETE", "results": results}
            if missing:
                answer["numErrors"] = len(missing)
                answer["errors"] = [{"status": "error", "category": "OBJECT_NOT_FOUND",
                                     "message": f"No {to} is associated with {kind} {id_}.", "context": {"id": [id_]}}
                                    for id_ in missing]
                return 207, answer
            return 200, answer
        match = re.fullmatch(r"/crm/v3/objects/([\w\-]+)/search", path)
        if not match:
            return 404, {"status": "error", "message": "Not found", "correlationId": "x", "category": "OBJECT_NOT_FOUND"}
        kind = match.group(1)
        if kind not in self.objects:
            return invalid(f"Unable to infer object type from: {kind}")
        limit = int(body.get("limit") or 10)
        if not 1 <= limit <= 200:
            return invalid(f"limit must be between 1 and 200, got {limit}")
        after = int(body.get("after") or 0)
        if after >= self.search_cap:
            return invalid(f"The maximum value of the `after` parameter is {self.search_cap}; narrow the search instead")
        if self.broken_search is not None and after >= self.broken_search[0]:
            return self.broken_search[1], self.error_body(self.broken_search[1])
        tests = []
        for group in body.get("filterGroups") or []:
            conditions = []
            for condition in group.get("filters") or []:
                operator = condition.get("operator")
                if operator not in _SEARCH_OPERATORS:
                    return invalid(f"Unsupported operator {operator}")
                conditions.append((condition.get("propertyName"), operator, condition.get("value")))
            tests.append(conditions)
        records = [r for r in self.objects[kind] if not r.get("archived")]
        if tests:
            records = [r for r in records if any(all(self._matches(r, *c) for c in group) for group in tests)]
        for sort in reversed(body.get("sorts") or []):
            name = sort.get("propertyName")
            records.sort(key=lambda r, name=name: _sortable(name, self._stored(r).get(name)),
                         reverse=sort.get("direction") == "DESCENDING")
        properties = list(body.get("properties") or [])
        end = after + min(limit, self.page_size)
        page: dict[str, Any] = {"total": len(records),
                                "results": [self._record(kind, r, properties, []) for r in records[after:end]]}
        if end < len(records):
            page["paging"] = {"next": {"after": str(end)}}
        return 200, page

    def _matches(self, record: dict[str, Any], name: str, operator: str, value: Any) -> bool:
        actual = self._stored(record).get(name)
        if actual is None:
            return False
        left, right = _sortable(name, actual), _sortable(name, value)
        return _SEARCH_OPERATORS[operator](left, right)

    def _stored(self, record: dict[str, Any]) -> dict[str, Any]:
        return {"hs_object_id": record["id"], "createdate": record.get("createdAt"),
                "hs_lastmodifieddate": record.get("updatedAt"), **record.get("properties", {})}

    def _companies(self, kind: str, companies: list[Any]) -> list[dict[str, str]]:
        singular = kind.removesuffix("s")
        return [{"id": str(c), "type": f"{singular}_to_company{suffix}"} for c in companies for suffix in ("", "_unlabeled")]

    def _page(self, path, query, items, after, limit, shape) -> dict[str, Any]:
        end = after + min(limit, self.page_size)
        page: dict[str, Any] = {"results": [shape(item) for item in items[after:end]]}
        if end < len(items):
            link = {**{k: v[-1] for k, v in query.items()}, "after": str(end)}
            page["paging"] = {"next": {"after": str(end), "link": f"{self.url}{path}?{urlencode(link)}"}}
        return page

    def _record(self, kind: str, record: dict[str, Any], properties: list[str], associations: list[str]) -> dict[str, Any]:
        stored = self._stored(record)
        shown = {p: (None if stored[p] is None else str(stored[p])) for p in dict.fromkeys([*_HUBSPOT_ALWAYS, *properties]) if p in stored}
        out: dict[str, Any] = {
            "id": str(record["id"]),
            "properties": shown,
            "createdAt": record.get("createdAt", "2024-01-01T00:00:00Z"),
            "updatedAt": record.get("updatedAt", "2024-01-01T00:00:00Z"),
            "archived": bool(record.get("archived")),
        }
        if "companies" in associations and record.get("companies"):
            out["associations"] = {"companies": {"results": self._companies(kind, record["companies"])}}
        return out


_SEARCH_OPERATORS = {
    "EQ": lambda a, b: a == b, "NEQ": lambda a, b: a != b, "GT": lambda a, b: a > b,
    "GTE": lambda a, b: a >= b, "LT": lambda a, b: a < b, "LTE": lambda a, b: a <= b,
}
_DATE_PROPERTIES = ("hs_lastmodifieddate", "createdate")


def _sortable(name: str, value: Any) -> Any:
    """A property value as search compares it: dates as epoch milliseconds (given as ISO or ms)."""
    if value is None:
        return ""
    text = str(value)
    if name in _DATE_PROPERTIES:
        if text.lstrip("-").isdigit():
            return int(text)
        return int(dt.datetime.fromisoformat(text).timestamp() * 1000)
    return text


# --- Zendesk -------------------------------------------------------------------------------------


class ZendeskServer(FakeApi):
    """The cursor-based incremental ticket export: `GET /api/v2/incremental/tickets/cursor.json`
    with `start_time` (Unix time) first and `cursor` (from `after_cursor`/`after_url`) after, until
    `end_of_stream`. Sideloads `include=organizations`; `exclude_deleted=true` leaves out deleted
    tickets. Basic auth `{email}/token:{token}`.

    `tickets`: ticket versions in the order they happened; a ticket updated twice is two versions,
    both exported when both are after `start_time` (the export's duplicates).
    """

    name = "zendesk"

    def __init__(
        self,
        tickets: list[dict[str, Any]],
        organizations: list[dict[str, Any]] = (),
        email: str = "admin@example.com",
        token: str = "zd-api-token-0123456789abcdef",
        page_size: int = 1000,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.tickets = list(tickets)
        self.organizations = {org["id"]: org for org in organizations}
        self.email, self.token = email, token
        self.page_size = page_size

    def authorized(self, headers) -> bool:
        return _basic(headers) == (f"{self.email}/token", self.token)

    def error_body(self, status: int) -> Any:
        return {
            401: {"error": "Couldn't authenticate you"},
            403: {"error": "Forbidden", "description": "You do not have access to this page. Please contact the "
                  "account owner of this help desk for further help."},
            429: {"error": "APIRateLimitExceeded", "description": "Number of allowed incremental export API requests "
                  "per minute exceeded"},
            500: {"error": "InternalError", "description": "Something went wrong"},
        }.get(status, {"error": "Error"})

    def route(self, path: str, query: dict[str, list[str]], headers) -> Answer:
        if path != "/api/v2/incremental/tickets/cursor.json":
            return 404, {"error": "InvalidEndpoint", "description": "Not found"}
        cursor, start_time = _one(query, "cursor"), _one(query, "start_time")
        if (cursor is None) == (start_time is None):
            return 400, {"error": "InvalidPaginationParameter",
                         "description": "give start_time for the first request and cursor for the next ones"}
        per_page = int(_one(query, "per_page", "1000") or 1000)
        if not 1 <= per_page <= 1000:
            return 400, {"error": "InvalidPaginationParameter", "description": "per_page must be between 1 and 1000"}
        versions = sorted(
            (t for t in self.tickets if not (_one(query, "exclude_deleted") == "true" and t.get("status") == "deleted")),
            key=lambda t: _epoch(t["updated_at"]),
        )
        if cursor is not None:
            try:
                position, since = (int(x) for x in base64.urlsafe_b64decode(cursor.encode()).decode().split(":"))
            except (ValueError, UnicodeDecodeError):
                return 400, {"error": "InvalidPaginationParameter", "description": "invalid cursor"}
        else:
            if not start_time.isdigit():
                return 400, {"error": "InvalidValue", "description": "start_time must be a Unix epoch time"}
            if int(start_time) > time.time() - 60:
                return 400, {"error": "InvalidValue", "description": "Too recent start_time. Use a start_time older than 1 minute"}
            position, since = 0, int(start_time)
        chosen = [t for t in versions if _epoch(t["updated_at"]) >= since]
        page = chosen[position : position + min(per_page, self.page_size)]
        end = position + len(page)
        after = base64.urlsafe_b64encode(f"{end}:{since}".encode()).decode()
        body: dict[str, Any] = {
            "tickets": page,
            "after_url": f"{self.url}{path}?{urlencode({'cursor': after})}",
            "after_cursor": after,
            "before_url": None,
            "before_cursor": None,
            "end_of_stream": end >= len(chosen),
        }
        if "organizations" in (_one(query, "include") or "").split(","):
            ids = dict.fromkeys(t.get("organization_id") for t in page if t.get("organization_id") is not None)
            body["organizations"] = [self.organizations[i] for i in ids if i in self.organizations]
        return 200, body


def _epoch(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).timestamp())


# --- Delighted -----------------------------------------------------------------------------------


class DelightedServer(FakeApi):
    """`GET /v1/survey_responses.json?per_page&page&since&expand[]=person`: a JSON array per page,
    oldest first, an empty array after the last page. Basic auth with the API key as username.

    `responses`: survey responses as the API shows them (`person` is the person's id);
    `people`: person id → person, shown in place of the id with `expand[]=person`.
    """

    name = "delighted"

    def __init__(
        self,
        responses: list[dict[str, Any]],
        people: dict[str, dict[str, Any]] | None = None,
        api_key: str = "dl-api-key-0123456789abcdef",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.responses = list(responses)
        self.people = people or {}
        self.api_key = api_key

    def authorized(self, headers) -> bool:
        credentials = _basic(headers)
        return credentials is not None and credentials[0] == self.api_key

    def error_body(self, status: int) -> Any:
        return {
            401: {"status": 401, "message": "Invalid API key"},
            403: {"status": 403, "message": "Forbidden"},
            429: {"status": 429, "message": "Too Many Requests"},
            500: {"status": 500, "message": "Internal Server Error"},
        }.get(status, {"status": status, "message": "Error"})

    def route(self, path: str, query: dict[str, list[str]], headers) -> Answer:
        if path != "/v1/survey_responses.json":
            return 404, {"status": 404, "message": "Not Found"}
        per_page = min(int(_one(query, "per_page", "20") or 20), 100)
        page = int(_one(query, "page", "1") or 1)
        since = int(_one(query, "since", "0") or 0)
        chosen = sorted((r for r in self.responses if r["created_at"] >= since), key=lambda r: (r["created_at"], r["id"]))
        shown = chosen[(page - 1) * per_page : page * per_page]
        if "person" in query.get("expand[]", []):
            shown = [{**r, "person": self.people.get(r["person"], r["person"])} for r in shown]
        return 200, shown
