"""What the SaaS connectors (Salesforce, HubSpot, Zendesk, Delighted) share.

- `ApiConnector`: the settings every API connector has: a timeout per request and a bounded time
  for retrying one request (`retry_max_seconds`).
- `Api.read`: runs dlt `rest_api` resources (declared endpoints and paginators) through one
  `RetryingSession`: HTTP 429 (honouring `Retry-After`), 5xx, timeouts and dropped connections
  are retried with exponential backoff until the time budget is spent; a 401/403 fails at once.
  Every failure becomes a `ConnectorError` naming the connector and the setting to fix, with the
  secrets redacted.
- `SourceObject` and `RowMapping`: a record of the API becomes one row of contract columns
  (text), picked by a field mapping (`fields`) and translated by value maps (`values`).

A field spec, in every connector's `fields`, is a path into the API record:

    Name                  a field; dotted paths follow nested objects (`Owner.Email`)
    custom_fields.360001  in a list of {id, value} objects, the value of the item with that id
    A|B                   the first of A and B that is not empty
    =meeting              a literal value
    owner:hubspot_owner_id   a connector-defined lookup applied to the field (HubSpot owners)
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

import polars as pl
import requests
from dlt.sources.rest_api import rest_api_resources
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from requests.auth import AuthBase
from requests.exceptions import ChunkedEncodingError

from cs_pipeline.logic.contract import ENTITIES, SOURCE, Column
from cs_pipeline.sources.base import Connector, ConnectorError

RETRY_STATUSES = frozenset({429, *range(500, 600)})
MAX_BACKOFF_SECONDS = 30.0
RETRY_ERRORS = (requests.ConnectionError, requests.Timeout, ChunkedEncodingError)


class ApiConnector(Connector):
    """Settings of every connector that reads an HTTP API."""

    timeout_seconds: float = Field(30.0, gt=0, description="how long one request may wait for an answer")
    retry_max_seconds: float = Field(
        300.0, ge=0, description="how long one request is retried (429, 5xx, timeouts) before the read fails"
    )
    backoff_seconds: float = Field(1.0, ge=0, description="first wait between retries; doubles each time, at most 30 s")

    def _api(self, base_url: str, auth: AuthBase, credentials: str, secrets: Iterable[str], **extra: Any) -> Api:
        return Api(
            name=self.type,
            base_url=base_url,
            auth=auth,
            credentials=credentials,
            secrets=tuple(s for s in secrets if s),
            timeout=self.timeout_seconds,
            retry_max_seconds=self.retry_max_seconds,
            backoff_seconds=self.backoff_seconds,
            **extra,
        )


@dataclass(frozen=True)
class Api:
    """One API as a connector reads it: where, with which credentials, and how patiently."""

    name: str  # the connector type, first word of every error
    base_url: str
    auth: AuthBase
    credentials: str  # where the credentials come from, e.g. "environment variable X (setting `token_env`)"
    secrets: tuple[str, ...] = ()
    timeout: float = 30.0
    retry_max_seconds: float = 300.0
    backoff_seconds: float = 1.0
    headers: Mapping[str, str] = field(default_factory=dict)
    bad_request_hint: str = ""  # what to check when the API rejects a request as malformed (HTTP 400)

    def read(self, resources: list[dict[str, Any]]) -> dict[str, list[Any]]:
        """Run dlt `rest_api` resources (each a resource config with a unique `name`) and return
        every item of each, by resource name. Any failure is a ConnectorError."""
        config = {
            "client": {
                "base_url": self.base_url,
                "auth": self.auth,
                "headers": dict(self.headers),
                "session": RetryingSession(self),
            },
            "resources": [_escape_placeholders(resource) for resource in resources],
        }
        try:
            return {resource.name: list(resource) for resource in rest_api_resources(config)}
        except Exception as exc:  # noqa: BLE001 - every failure is reported as this connector's
            raise self.failure(exc) from None

    def call(self, method: str, path: str, *, json_body: Any = None, params: Mapping[str, Any] | None = None) -> Any:
        """One request outside `rest_api` (e.g. a POST search), with the same retries, auth and
        errors as `read`; returns the decoded JSON answer."""
        session = RetryingSession(self)
        try:
            response = session.request(
                method,
                f"{self.base_url.rstrip('/')}/{path.lstrip('/')}",
                json=json_body,
                params=params,
                auth=self.auth,
                headers=dict(self.headers),
            )
            if not response.ok:
                raise self.http_failure(response)
            return response.json()
        except ConnectorError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is reported as this connector's
            raise self.failure(exc) from None
        finally:
            session.close()

    # --- errors ------------------------------------------------------------------------------

    def failure(self, exc: BaseException) -> ConnectorError:
        """The ConnectorError for anything that went wrong while reading."""
        causes = list(_causes(exc))
        for cause in causes:
            if isinstance(cause, ConnectorError):
                return ConnectorError(self.redact(str(cause)))
            if isinstance(cause, requests.HTTPError) and cause.response is not None:
                return self.http_failure(cause.response)
        root = causes[-1]
        return ConnectorError(self.redact(f"{self.name}: reading {self.base_url} failed: {type(root).__name__}: {root}"))

    def http_failure(self, response: requests.Response) -> ConnectorError:
        status = response.status_code
        where = urlsplit(response.url).path or "/"
        detail = api_message(response)
        detail = f": {detail}" if detail else ""
        if status == 401:
            message = (
                f"{self.name}: the API refused the credentials (HTTP 401 from {where}{detail}); "
                f"check {self.credentials}"
            )
        elif status == 403:
            message = (
                f"{self.name}: access denied (HTTP 403 from {where}{detail}); check the permissions (scopes) "
                f"behind {self.credentials}, or the account's API limits"
            )
        else:
            hint = f"; {self.bad_request_hint}" if status == 400 and self.bad_request_hint else ""
            message = f"{self.name}: HTTP {status} from {where}{detail}{hint}"
        return ConnectorError(self.redact(message))

    def gave_up(self, request: requests.PreparedRequest, attempts: int, elapsed: float, problem: str, asked_wait: float | None) -> ConnectorError:
        where = urlsplit(request.url or "").path or "/"
        if asked_wait is not None:
            why = f"the API asked to wait {asked_wait:g} s more (Retry-After), beyond"
        else:
            why = "retries are bounded by"
        return ConnectorError(
            self.redact(
                f"{self.name}: gave up on {where} after {attempts} attempt(s) in {elapsed:.1f} s, last: {problem}; "
                f"{why} `retry_max_seconds` ({self.retry_max_seconds:g} s): try again later or raise it"
            )
        )

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


class RetryingSession(requests.Session):
    """A requests session that retries what is worth retrying, within `Api.retry_max_seconds`.

    Retried: HTTP 429 and 5xx (waiting `Retry-After` when the API sends one, else exponential
    backoff from `backoff_seconds`), timeouts, refused or dropped connections. Anything else,
    401 and 403 included, is answered at once. When the next wait would pass the budget, the
    request fails with a ConnectorError saying how often and how long it was tried.
    """

    def __init__(self, api: Api) -> None:
        super().__init__()
        self.api = api

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.api.timeout
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            response: requests.Response | None = None
            try:
                response = super().send(request, **kwargs)
            except requests.HTTPError as exc:  # rest_api's response hook raises for every error status
                if exc.response is None or exc.response.status_code not in RETRY_STATUSES:
                    raise
                response = exc.response
            except RETRY_ERRORS as exc:
                problem = _describe(exc, self.api.timeout)
            if response is not None:
                if response.status_code not in RETRY_STATUSES:
                    return response
                detail = api_message(response)
                problem = f"HTTP {response.status_code}" + (f": {detail}" if detail else "")
            asked = retry_after(response)
            wait = asked if asked is not None else self._backoff(attempt)
            elapsed = time.monotonic() - started
            if elapsed + wait > self.api.retry_max_seconds:
                raise self.api.gave_up(request, attempt, elapsed, problem, asked)
            if response is not None:
                response.close()
            time.sleep(wait)

    def _backoff(self, attempt: int) -> float:
        base = min(self.api.backoff_seconds * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS)
        return base * (1 + random.random() / 4)  # jitter: parallel readers do not retry in step


def retry_after(response: requests.Response | None) -> float | None:
    """Seconds to wait that a 429 or 503 answer asks for (`Retry-After`: seconds or an HTTP date)."""
    if response is None or response.status_code not in (429, 503):
        return None
    header = (response.headers.get("Retry-After") or "").strip()
    if not header:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


def api_message(response: requests.Response) -> str:
    """The error an API put in its answer, shortened: Salesforce `[{errorCode, message}]`,
    HubSpot `{category, message}`, Zendesk `{error, description}`, or the text itself."""
    try:
        body = response.json()
    except ValueError:
        body = response.text
    if isinstance(body, list) and body:
        body = body[0]
    if isinstance(body, dict):
        code = body.get("errorCode") or body.get("category") or body.get("errorType")
        text = body.get("message") or body.get("description") or body.get("error") or body.get("title")
        if isinstance(text, dict):  # Zendesk: {"error": {"title": ..., "message": ...}}
            text = text.get("message") or text.get("title")
        if not code and body.get("error") and body.get("description"):
            code = body["error"]
        if isinstance(text, str) and "\nERROR at Row:" in text:  # Salesforce: the query, a caret, then the error
            text = text.strip().rsplit("\n", 1)[-1]
        parts = [str(p) for p in (code, text) if p]
        body = ": ".join(dict.fromkeys(parts))
    text = " ".join(str(body or "").split())
    return text[:300] + ("…" if len(text) > 300 else "")


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, requests.Timeout):
        return f"no answer within {timeout:g} s (`timeout_seconds`)"
    if isinstance(exc, ChunkedEncodingError):
        return "the connection dropped in the middle of the answer"
    return "the connection failed or was dropped"


def _causes(exc: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _escape_placeholders(resource: dict[str, Any]) -> dict[str, Any]:
    """rest_api formats an endpoint's path, params, headers and body with str.format
    (`{incremental.start_value}`): double the braces of literal text such as a SOQL query so that
    it arrives unchanged."""
    endpoint = resource.get("endpoint")
    if not isinstance(endpoint, dict):
        return resource
    escaped = {key: _double_braces(endpoint[key]) for key in ("path", "params", "headers", "json") if key in endpoint}
    return {**resource, "endpoint": {**endpoint, **escaped}}


def _double_braces(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("{", "{{").replace("}", "}}")
    if isinstance(value, dict):
        return {_double_braces(k): _double_braces(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_double_braces(v) for v in value]
    return value


# --- records to contract rows ------------------------------------------------------------------


def normalise_choice(text: str) -> str:
    """`Mid-Market` → `mid_market`: how a source's label is compared with the contract's values."""
    return re.sub(r"[\s\-]+", "_", text.strip().lower())


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, dict) else value


class SourceObject(BaseModel):
    """One object (table, object type) of an API that lands an entity, and how its records map.

    `fields`: contract column → field spec (see the module docstring); merged over the
    connector's defaults for that object. `values`: contract column → {source value → contract
    value}, compared case-insensitively; `""` stands for an empty value. A value of a column with
    fixed choices (segment, status, type, priority) that no map names is compared by its
    normalised label (`Mid-Market` is `mid_market`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    object: str | None = None
    fields: dict[str, str] = {}
    values: dict[str, dict[str, str]] = {}


# An entity's objects in sources.yaml: one mapping or a list of them.
def objects_of(model: type[BaseModel]) -> Any:
    return Annotated[tuple[model, ...], BeforeValidator(_as_list)]  # type: ignore[valid-type]


@dataclass(frozen=True)
class RowMapping:
    """Turns one API record into one row of the entity's contract columns (text) and `source_file`."""

    entity: str
    fields: Mapping[str, str]
    values: Mapping[str, Mapping[str, str]]
    source: str
    lookups: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        entity: str,
        source: str,
        default_fields: Mapping[str, str],
        default_values: Mapping[str, Mapping[str, str]],
        obj: SourceObject,
        lookups: Mapping[str, Callable[[Any], Any]] | None = None,
    ) -> RowMapping:
        fields = {**default_fields, **obj.fields}
        values: dict[str, dict[str, str]] = {}
        for column in {*default_values, *obj.values}:
            merged = {**default_values.get(column, {}), **obj.values.get(column, {})}
            values[column] = {normalise_choice(str(k)): str(v) for k, v in merged.items()}
        return cls(entity, fields, values, source, dict(lookups or {}))

    def problems(self) -> list[str]:
        """What is wrong with the mapping itself: unknown or unmapped contract columns."""
        entity = ENTITIES[self.entity]
        found = []
        unknown = sorted({*self.fields, *self.values} - set(entity.column_names))
        if unknown:
            found.append(f"{', '.join(unknown)} not among the {self.entity} columns ({', '.join(entity.column_names)})")
        missing = [c for c in entity.required_columns if not (self.fields.get(c) or "").strip()]
        if missing:
            found.append(f"no field mapped to required column(s) {', '.join(missing)}")
        return found

    def paths(self) -> list[str]:
        """Every field path the mapping reads (without literals and lookup names)."""
        found: list[str] = []
        for spec in self.fields.values():
            for option in _options(spec):
                if option.startswith("="):
                    continue
                name, _, path = option.partition(":")
                found.append(path if path and name in self.lookups else option)
        return list(dict.fromkeys(p for p in found if p))

    def uses(self, lookup: str) -> bool:
        """Whether any field spec applies the named lookup (`owner:...`)."""
        return any(
            option.partition(":")[0] == lookup and ":" in option for spec in self.fields.values() for option in _options(spec)
        )

    def __call__(self, record: Mapping[str, Any]) -> dict[str, str | None]:
        row: dict[str, str | None] = {}
        for column in ENTITIES[self.entity].columns:
            spec = self.fields.get(column.name)
            text = as_text(pick(record, spec, self.lookups), column.kind) if spec else None
            row[column.name] = self._translate(column, text)
        row[SOURCE] = self.source
        return row

    def _translate(self, column: Column, text: str | None) -> str | None:
        mapping = self.values.get(column.name)
        key = normalise_choice(text or "")
        if mapping and key in mapping:
            return mapping[key] or None
        if column.choices and key in column.choices:
            return key
        return text


def _options(spec: str) -> list[str]:
    return [option.strip() for option in spec.split("|") if option.strip()]


def pick(record: Mapping[str, Any], spec: str, lookups: Mapping[str, Callable[[Any], Any]] | None = None) -> Any:
    """The value a field spec selects from a record (see the module docstring)."""
    for option in _options(spec):
        if option.startswith("="):
            return option[1:]
        name, colon, path = option.partition(":")
        lookup = (lookups or {}).get(name) if colon else None
        value = dig(record, path if lookup else option)
        if lookup is not None and not _empty(value):
            value = lookup(value)
        if not _empty(value):
            return value
    return None


def dig(record: Any, path: str) -> Any:
    current = record
    for part in path.split("."):
        if isinstance(current, Mapping):
            current = current.get(part)
        elif isinstance(current, list):  # [{id, value}] lists such as Zendesk's custom_fields
            current = next(
                (item.get("value") for item in current if isinstance(item, Mapping) and str(item.get("id")) == part), None
            )
        else:
            return None
        if current is None:
            return None
    return current


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


_ISO_DATETIME = re.compile(r"^\d{4}-\d\d-\d\d[T ]")
_EPOCH = re.compile(r"^-?\d{9,13}(\.\d+)?$")


def as_text(value: Any, kind: str = "string") -> str | None:
    """An API value as the contract's text for a column of `kind`.

    Dates keep their calendar day (`2024-03-01T00:00:00Z` → `2024-03-01`); Unix epochs (seconds or
    milliseconds, as numbers or digits) become ISO-8601 UTC; whole floats lose their `.0`.
    """
    if _empty(value):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if kind in ("timestamp", "date"):
        epoch = value if isinstance(value, (int, float)) else (float(value) if _EPOCH.match(str(value).strip()) else None)
        if epoch is not None:
            moment = dt.datetime.fromtimestamp(epoch / 1000 if abs(epoch) >= 1e11 else epoch, dt.UTC)
            return moment.date().isoformat() if kind == "date" else moment.isoformat()
        text = str(value).strip()
        return text[:10] if kind == "date" and _ISO_DATETIME.match(text) else text
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (int, float, str)):
        return str(value)
    return json.dumps(value)


def unix_time(value: int | dt.datetime | dt.date) -> int:
    """A setting given as Unix time, an ISO date or a datetime (naive is UTC), as Unix time."""
    if isinstance(value, int):
        return value
    if not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time())
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return int(value.timestamp())


def rows_frame(entity: str, rows: list[dict[str, str | None]]) -> pl.DataFrame:
    """Rows of contract columns plus `source_file`, all text, in the contract's column order."""
    schema = {name: pl.String for name in [*ENTITIES[entity].column_names, SOURCE]}
    return pl.DataFrame(rows, schema=schema) if rows else pl.DataFrame(schema=schema)


def check_mappings(owner: str, mappings: Iterable[tuple[str, RowMapping]]) -> None:
    """Fail config validation with every problem of every mapping, named by entity and object."""
    problems = [f"{label}: {problem}" for label, mapping in mappings for problem in mapping.problems()]
    if problems:
        raise ValueError(f"{owner} field mapping: " + "; ".join(problems))
