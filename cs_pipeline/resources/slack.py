"""Slack delivery: alerts to their owner (a DM), run failures to on-call, or an outbox folder.

Every delivery ends as a `Delivery` with a status, never as an exception: the dispatch job
records it (through `cs_pipeline.actions`, which owns the delivery protocol), and a `failed` one
is tried again on a later sensor tick.

Posting is never retried after a request may have reached Slack. slack-sdk's default retry
handler re-sends a request whose connection dropped, and Slack may already have posted that
message, so a retry would post it twice. chat.postMessage therefore retries only the answers
that prove nothing was posted: HTTP 429 (after its `Retry-After`) and HTTP 500/503. Lookups
change nothing, so they also retry dropped connections.

The bot token never leaves this module: it is not in `repr`, reasons, logs or exceptions.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import http.client
import json
import os
import re
import socket
import tempfile
from pathlib import Path
from urllib.error import URLError
from urllib.parse import urlsplit

import dagster as dg
from pydantic import Field, PrivateAttr, field_validator
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.http_retry import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler, RetryHandler
from slack_sdk.http_retry.builtin_handlers import ServerErrorRetryHandler

from cs_pipeline.messages import AlertMessage, ResolvedMessage, render_run_failure
from cs_pipeline.settings import SEVERITIES

AUTH_ERRORS = {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"}
OWNER_NOT_FOUND = {"users_not_found", "user_not_found"}
# A longer Retry-After than this is not waited for inside a run: the next sensor tick retries.
MAX_RETRY_AFTER_SECONDS = 30
EVENT_TYPE_ALERT = "cs_pipeline_alert"
EVENT_TYPE_RUN_FAILURE = "cs_pipeline_run_failure"
EVENT_TYPE_RESOLVED = "cs_pipeline_alert_resolved"
EVENT_TYPE_DIGEST = "cs_pipeline_digest"
EVENT_TYPE_WEEKLY_DIGEST = "cs_pipeline_weekly_digest"
# conversations.history looks this far before the recorded attempt time, for clock skew.
HISTORY_MARGIN_SECONDS = 300


@dataclasses.dataclass(frozen=True)
class Delivery:
    """The outcome of one message.

    channel: where it went; once sent to Slack, the channel id Slack answered (a `D…` id for a
    DM), which with `message_ts` identifies the message. reason: why it failed, or, when sent,
    why it did not go where it should have (the owner was not found).
    """

    destination: str  # slack | outbox
    channel: str
    status: str  # sent | failed | unsure (the request may have reached Slack: look it up before posting again)
    reason: str | None = None
    message_ts: str | None = None
    path: str | None = None
    retry_after: float | None = None  # a 429's Retry-After, in seconds: nothing was posted


@dataclasses.dataclass(frozen=True)
class Address:
    """Where an alert goes in Slack: a user id (a DM) or a channel, and why, when not the owner."""

    channel: str
    note: str | None = None
    missing: str | None = None


class SlackResource(dg.ConfigurableResource):
    """Posts alerts and run failures to Slack, or writes them to an outbox folder without a token."""

    bot_token: str | None = Field(
        default=None,
        repr=False,
        description="Slack bot token (xoxb-…), from EnvVar('SLACK_BOT_TOKEN'). Without it, messages go to the outbox.",
    )
    api_url: str = Field(
        default="https://slack.com/api/",
        description="Base URL of a Slack-compatible Web API (SLACK_API_URL).",
    )
    outbox_dir: str = Field(default="data/outbox", description="Where messages are written when there is no token.")
    segment_channels: dict[str, str] = Field(
        default={"enterprise": "#cs-enterprise", "mid_market": "#cs-mid-market", "smb": "#cs-smb"},
        description="Channel per account segment, used when the owner cannot be found in Slack.",
    )
    fallback_channel: str = Field(default="#customer-success", description="Channel for segments without one.")
    oncall_channel: str = Field(default="#cs-pipeline-oncall", description="Where run failures are posted.")
    rate_limit_retries: int = Field(default=3, description="Retries of a rate-limited (HTTP 429) request.")
    server_error_retries: int = Field(default=2, description="Retries of an HTTP 500/503 answer.")
    timeout_seconds: int = Field(default=10, description="Timeout of one HTTP request to Slack.")

    min_seconds_between_posts_per_channel: float = Field(
        default=1.0, description="Spacing of the dispatch job's posts to one channel (Slack allows about 1 message/s)."
    )

    # Off by default: each live alert gets its own message (CONTRACT.md §4) until a team opts in.
    digest_severities: list[str] = Field(
        default=[],
        description="Severities whose new alerts a CSM gets in one digest per dispatch instead of one message each "
        "(CS_PIPELINE_DIGEST_SEVERITIES).",
    )
    max_alerts_per_csm_per_day: int | None = Field(
        default=None, description="Alert messages one CSM gets a day; further new alerts go to the digest (None: no cap)."
    )

    @field_validator("digest_severities")
    @classmethod
    def _known_severities(cls, value: list[str]) -> list[str]:
        unknown = [s for s in value if s not in SEVERITIES]
        if unknown:
            raise ValueError(f"unknown severity {unknown[0]!r}; choose from {', '.join(SEVERITIES)}")
        return value

    _clients: dict[str, WebClient] = PrivateAttr(default_factory=dict)
    _owner_ids: dict[str, str | None] = PrivateAttr(default_factory=dict)

    # ------------------------------------------------------------------ public API

    @property
    def uses_slack(self) -> bool:
        return bool(self._token())

    def addressee(self, msg: AlertMessage | ResolvedMessage) -> str:
        """Who an alert is for before any lookup: the owner's email, else the segment's channel."""
        return (msg.owner_email or "").strip() or self.channel_for_segment(msg.segment)

    def address_alert(self, msg: AlertMessage | ResolvedMessage) -> Address | Delivery:
        """Where `msg` goes in Slack (the owner's user id, else the segment's channel), or a failed Delivery."""
        try:
            user_id, missing = self._owner_user_id(msg.owner_email)
        except Exception as err:  # noqa: BLE001 - every failure becomes a failed delivery
            return self._failed(self.addressee(msg), f"owner lookup: {self._reason(err)}")
        if user_id is not None:
            return Address(channel=user_id)
        channel = self.channel_for_segment(msg.segment)
        return Address(channel=channel, note=f"{missing}, so this alert went to {channel}. Please pick it up.", missing=missing)

    def post(self, channel: str, text: str, blocks: list[dict], event_type: str, payload: dict) -> Delivery:
        """Post once; a 429 comes back at once as a failed Delivery with `retry_after` (the caller
        backs off that channel only), a lost answer as `unsure`."""
        return self._post(channel, text, blocks, event_type, payload, wait_out_rate_limits=False)

    def write_outbox(self, key: str, content: dict) -> Delivery:
        """Write `content` as `<outbox_dir>/<key>.json`; the same key replaces the file."""
        text = " ".join(str(content.get("text") or "").split())
        data = (json.dumps(content, ensure_ascii=False, indent=2, default=str) + "\n").encode("utf-8")
        return self._write_outbox_file(f"{_safe_name(key)}.json", data, str(content.get("channel") or ""), text)

    def write_outbox_image(self, key: str, data: bytes, channel: str) -> Delivery:
        """Write a PNG as `<outbox_dir>/<key>.png` (an image shared beside a message); the same key replaces it."""
        name = f"{_safe_name(key)}.png"
        return self._write_outbox_file(name, data, channel, f"image {name}")

    def reason(self, err: Exception) -> str:
        """A short reason for `err`, free of the token."""
        return self._reason(err)

    def find_post(self, channel: str, since: dt.datetime, event_type: str, payload: dict) -> tuple[str, str] | None:
        """(channel id, ts) of a message this app posted to `channel` since `since` (UTC) whose
        metadata has `event_type` and `payload`; None when there is none. Raises when Slack
        cannot be asked, so the caller never re-sends on a guess."""
        client = self._client(for_posting=False)
        channel_id = channel
        if channel[:1] in ("U", "W"):  # a DM was addressed by user id: history needs the DM's id
            channel_id = client.conversations_open(users=channel)["channel"]["id"]
        elif channel.startswith("#"):
            channel_id = self._channel_id_by_name(client, channel.lstrip("#"))
            if channel_id is None:
                return None
        oldest = since.replace(tzinfo=dt.UTC).timestamp() - HISTORY_MARGIN_SECONDS
        cursor = None
        while True:
            page = client.conversations_history(
                channel=channel_id, oldest=f"{oldest:.6f}", include_all_metadata=True, limit=200, cursor=cursor
            )
            for message in page.get("messages") or []:
                if _has_metadata(message, event_type, payload):
                    return channel_id, str(message.get("ts"))
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return None

    def _channel_id_by_name(self, client: WebClient, name: str) -> str | None:
        cursor = None
        while True:
            page = client.conversations_list(types="public_channel,private_channel", limit=1000, cursor=cursor)
            for channel in page.get("channels") or []:
                if channel.get("name") == name:
                    return channel.get("id")
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return None

    def deliver_run_failure(
        self, job_name: str, run_id: str, partition: str | None, error: str, run_url: str | None
    ) -> Delivery:
        """Tell on-call that a run failed."""
        text, blocks = render_run_failure(job_name, run_id, partition, self._redact(error), run_url)
        metadata = {"job_name": job_name, "run_id": run_id, "partition": partition}
        if not self.uses_slack:
            return self.write_outbox(
                f"run-failure-{run_id}", {"channel": self.oncall_channel, "text": text, "blocks": blocks} | metadata
            )
        payload = {key: value for key, value in metadata.items() if value is not None}
        return self._post(self.oncall_channel, text, blocks, EVENT_TYPE_RUN_FAILURE, payload)

    def upload_image(self, channel_id: str, content: bytes, filename: str, title: str, thread_ts: str | None = None) -> Delivery:
        """Share an image in `channel_id` (in `thread_ts`'s thread) through files_upload_v2
        (files.getUploadURLExternal, the upload, files.completeUploadExternal). Not retried on a
        dropped connection, like posts: the file may have been shared (`unsure`, see `find_file`)."""
        try:
            response = self._client(for_posting=True).files_upload_v2(
                channel=channel_id, content=content, filename=filename, title=title, thread_ts=thread_ts,
            )
        except Exception as err:  # noqa: BLE001 - every failure becomes a failed delivery
            return self._failed(channel_id, self._reason(err), unsure=_may_have_posted(err))
        file = response.get("file") or {}
        return Delivery(destination="slack", channel=channel_id, status="sent", message_ts=str(file.get("id") or ""))

    def find_file(self, channel_id: str, thread_ts: str, filename: str) -> tuple[str, str] | None:
        """(channel id, file id) of a file named `filename` shared in `thread_ts`'s thread, or None.
        Raises when Slack cannot be asked, so the caller never uploads again on a guess."""
        client, cursor = self._client(for_posting=False), None
        while True:
            page = client.conversations_replies(channel=channel_id, ts=thread_ts, limit=200, cursor=cursor)
            for message in page.get("messages") or []:
                for file in message.get("files") or []:
                    if file.get("name") == filename:
                        return channel_id, str(file.get("id"))
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return None

    def channel_for_segment(self, segment: str | None) -> str:
        return self.segment_channels.get(segment or "", self.fallback_channel)

    # ------------------------------------------------------------------ Slack

    def _token(self) -> str | None:
        token = (self.bot_token or "").strip()
        return token or None

    def _post(
        self, channel: str, text: str, blocks: list[dict], event_type: str, payload: dict, wait_out_rate_limits: bool = True
    ) -> Delivery:
        client = self._client(for_posting=True) if wait_out_rate_limits else self._client(for_posting=True, rate_limits=False)
        try:
            response = client.chat_postMessage(
                channel=channel,
                text=text,
                blocks=blocks,
                metadata={"event_type": event_type, "event_payload": payload},
                unfurl_links=False,
                unfurl_media=False,
            )
        except Exception as err:  # noqa: BLE001 - every failure becomes a failed delivery
            failed = self._failed(channel, self._reason(err), unsure=_may_have_posted(err))
            return dataclasses.replace(failed, retry_after=_retry_after(err))
        return Delivery(
            destination="slack",
            channel=str(response.get("channel") or channel),
            status="sent",
            message_ts=response.get("ts"),
        )

    def _owner_user_id(self, email: str | None) -> tuple[str | None, str | None]:
        """(the owner's Slack user id, None), or (None, why there is none).

        Raises for failures that may pass (rate limits, network) or that posting shares (auth),
        so the alert is retried instead of going to a channel.
        """
        email = (email or "").strip()
        if not email:
            return None, "This account has no owner"
        key = email.lower()
        if key not in self._owner_ids:
            try:
                user = self._client(for_posting=False).users_lookupByEmail(email=email)["user"]
                found = None if user.get("deleted") or user.get("is_bot") else user["id"]
            except SlackApiError as err:
                code = _error_code(err)
                if code in OWNER_NOT_FOUND:
                    found = None
                elif err.response.status_code == 200 and code not in AUTH_ERRORS:
                    # e.g. missing_scope (no users:read.email) or invalid_email: the channel still hears of it
                    return None, f"The owner {email} could not be looked up in Slack ({code})"
                else:
                    raise
            self._owner_ids[key] = found
        if self._owner_ids[key] is None:
            return None, f"The owner {email} was not found in Slack"
        return self._owner_ids[key], None

    def _client(self, for_posting: bool, rate_limits: bool = True) -> WebClient:
        """One client per use: lookups retry dropped connections, posts never do; the dispatch
        job's posts leave 429s to the caller (`rate_limits=False`)."""
        key = ("post" if for_posting else "lookup") + ("" if rate_limits else "-no-429")
        client = self._clients.get(key)
        if client is None:
            handlers: list[RetryHandler] = [ServerErrorRetryHandler(max_retry_count=self.server_error_retries)]
            if rate_limits:
                handlers.insert(0, _RateLimitRetry(max_retry_count=self.rate_limit_retries))
            if not for_posting:
                handlers.append(ConnectionErrorRetryHandler(max_retry_count=2))
            client = WebClient(
                token=self._token(),
                base_url=self.api_url,
                timeout=self.timeout_seconds,
                retry_handlers=handlers,
            )
            self._clients[key] = client
        return client

    def _failed(self, channel: str, reason: str, unsure: bool = False) -> Delivery:
        """A request that failed: `unsure` when its answer was lost and Slack may have done it."""
        return Delivery(destination="slack", channel=channel, status="unsure" if unsure else "failed",
                        reason=self._redact(reason))

    def _reason(self, err: Exception) -> str:
        """A short reason for `err`, free of the token."""
        if isinstance(err, SlackApiError):
            status = err.response.status_code
            code = _error_code(err)
            if status == 429:
                retry_after = _header(err.response.headers, "Retry-After")
                wait = f", Retry-After {retry_after} s" if retry_after else ""
                return f"rate limited by Slack (HTTP 429{wait}); retries exhausted"
            if status != 200:
                return f"Slack answered HTTP {status}" + (f" ({code})" if _is_code(code) else "")
            if code in AUTH_ERRORS:
                return f"{code}: check SLACK_BOT_TOKEN"
            if code == "missing_scope":
                needed = err.response.get("needed")
                return "missing_scope: the Slack app needs the scope " + (needed or "named in the app settings")
            if code in ("channel_not_found", "not_in_channel"):
                return f"{code}: create the channel or invite the bot to it"
            return code if _is_code(code) else "unexpected answer from the Slack API"
        if isinstance(err, (TimeoutError, socket.timeout)):
            return f"no answer within {self.timeout_seconds} s"
        if isinstance(err, (http.client.RemoteDisconnected, ConnectionError, http.client.IncompleteRead)):
            return "connection lost before Slack answered"
        if isinstance(err, URLError):
            cause = err.reason
            if isinstance(cause, (TimeoutError, socket.timeout)):
                return f"could not connect to {self._host()} within {self.timeout_seconds} s"
            if isinstance(cause, OSError):
                return f"could not connect to {self._host()}: {cause.strerror or type(cause).__name__}"
            return f"could not connect to {self._host()}: {cause}"
        if isinstance(err, SlackRequestError):
            return "invalid request: check SLACK_API_URL"
        return f"unexpected {type(err).__name__}: {str(err)[:200]}"

    def _host(self) -> str:
        return urlsplit(self.api_url).hostname or "the Slack API"

    def _redact(self, text: str) -> str:
        token = self._token()
        return text.replace(token, "[SLACK_BOT_TOKEN]") if token else text

    # ------------------------------------------------------------------ outbox

    def _write_outbox_file(self, name: str, data: bytes, channel: str, text: str) -> Delivery:
        """Write `data` as `<outbox_dir>/<name>` atomically and show `text`; the same name replaces the file."""
        folder = Path(self.outbox_dir)
        path = folder / name
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.stem}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as err:
            reason = f"could not write {path}: {err.strerror or type(err).__name__}"
            return Delivery(destination="outbox", channel=channel, status="failed", reason=reason, path=str(path))
        # Without Slack, the message is shown where the operator is looking: text, recipient, file.
        print(f"outbox → {channel or '(no channel)'}: {text[:200]}{'…' if len(text) > 200 else ''}\n  {path}", flush=True)
        return Delivery(destination="outbox", channel=channel, status="sent", path=str(path))


class _RateLimitRetry(RateLimitErrorRetryHandler):
    """Waits out a 429's Retry-After, unless it is too long to hold a run for."""

    def _can_retry(self, *, state, request, response=None, error=None) -> bool:
        if not super()._can_retry(state=state, request=request, response=response, error=error):
            return False
        retry_after = _header(response.headers, "Retry-After")
        try:
            return retry_after is None or int(retry_after) <= MAX_RETRY_AFTER_SECONDS
        except (TypeError, ValueError):
            return False


def _may_have_posted(err: Exception) -> bool:
    """A request whose answer was lost (a timeout or a dropped connection) may have been posted."""
    if isinstance(err, URLError):
        return False  # never connected
    return isinstance(err, (TimeoutError, socket.timeout, http.client.RemoteDisconnected, ConnectionError,
                            http.client.IncompleteRead))


def _has_metadata(message: dict, event_type: str, payload: dict) -> bool:
    metadata = message.get("metadata") or {}
    found = metadata.get("event_payload") or {}
    return metadata.get("event_type") == event_type and all(str(found.get(k)) == str(v) for k, v in payload.items())


def _retry_after(err: Exception) -> float | None:
    """Seconds to wait before posting to the channel again, when Slack answered 429."""
    if not isinstance(err, SlackApiError) or err.response.status_code != 429:
        return None
    try:
        return max(float(_header(err.response.headers, "Retry-After") or 1), 0.0)
    except ValueError:
        return 1.0


def _header(headers, name: str) -> str | None:
    """A header from slack-sdk's responses, whose values are strings or lists of strings."""
    value = next((v for k, v in (headers or {}).items() if k.lower() == name.lower()), None)
    if isinstance(value, list):
        value = value[0] if value else None
    return None if value is None else str(value)


def _error_code(err: SlackApiError) -> str:
    data = err.response.data
    return str(data.get("error") or "") if isinstance(data, dict) else ""


def _is_code(code: str) -> bool:
    """Slack error codes are short snake_case words; anything else is a body slack-sdk could not parse."""
    return bool(re.fullmatch(r"[a-z0-9_.]{1,64}", code))


def _safe_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", key)[:200]
