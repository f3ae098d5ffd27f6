"""Slack delivery: alerts to their owner (a DM), run failures to on-call, or an outbox folder.

Every delivery ends as a `Delivery` with a status, never as an exception: the dispatch job
records it, and a `failed` one is tried again on a later sensor tick.

Posting is never retried after a request may have reached Slack. slack-sdk's default retry
handler re-sends a request whose connection dropped, and Slack may already have posted that
message, so a retry would post it twice. chat.postMessage therefore retries only the answers
that prove nothing was posted: HTTP 429 (after its `Retry-After`) and HTTP 500/503. Lookups
change nothing, so they also retry dropped connections.

The bot token never leaves this module: it is not in `repr`, reasons, logs or exceptions.
"""

from __future__ import annotations

import dataclasses
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
from pydantic import Field, PrivateAttr
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.http_retry import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler, RetryHandler
from slack_sdk.http_retry.builtin_handlers import ServerErrorRetryHandler

from cs_pipeline.messages import AlertMessage, render_alert, render_run_failure

AUTH_ERRORS = {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"}
OWNER_NOT_FOUND = {"users_not_found", "user_not_found"}
# A longer Retry-After than this is not waited for inside a run: the next sensor tick retries.
MAX_RETRY_AFTER_SECONDS = 30
EVENT_TYPE_ALERT = "cs_pipeline_alert"
EVENT_TYPE_RUN_FAILURE = "cs_pipeline_run_failure"


@dataclasses.dataclass(frozen=True)
class Delivery:
    """The outcome of one message.

    channel: where it went; once sent to Slack, the channel id Slack answered (a `D…` id for a
    DM), which with `message_ts` identifies the message. reason: why it failed, or, when sent,
    why it did not go where it should have (the owner was not found).
    """

    destination: str  # slack | outbox
    channel: str
    status: str  # sent | failed
    reason: str | None = None
    message_ts: str | None = None
    path: str | None = None


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

    _post_client: WebClient | None = PrivateAttr(default=None)
    _lookup_client: WebClient | None = PrivateAttr(default=None)
    _owner_ids: dict[str, str | None] = PrivateAttr(default_factory=dict)

    # ------------------------------------------------------------------ public API

    @property
    def uses_slack(self) -> bool:
        return bool(self._token())

    def deliver_alert(self, msg: AlertMessage) -> Delivery:
        """Post `msg` to its owner, or to its segment's channel when the owner is not in Slack."""
        metadata = {"alert_id": msg.alert_id, "notification_number": msg.notification_number}
        if not self.uses_slack:
            text, blocks = render_alert(msg)
            return self._write_outbox(
                f"{msg.alert_id}-{msg.notification_number}",
                {"channel": self._addressee(msg), "text": text, "blocks": blocks} | metadata,
            )

        try:
            user_id, missing = self._owner_user_id(msg.owner_email)
        except Exception as err:  # noqa: BLE001 - every failure becomes a failed delivery
            return self._failed(self._addressee(msg), f"owner lookup: {self._reason(err)}")

        if user_id is not None:
            channel, note = user_id, None
        else:
            channel = self.channel_for_segment(msg.segment)
            note = f"{missing}, so this alert went to {channel}. Please pick it up."
        text, blocks = render_alert(msg, note=note)
        delivery = self._post(channel, text, blocks, EVENT_TYPE_ALERT, metadata)
        if delivery.status == "sent" and note:
            return dataclasses.replace(delivery, reason=f"{missing}; posted to {channel}")
        return delivery

    def deliver_run_failure(
        self, job_name: str, run_id: str, partition: str | None, error: str, run_url: str | None
    ) -> Delivery:
        """Tell on-call that a run failed."""
        text, blocks = render_run_failure(job_name, run_id, partition, self._redact(error), run_url)
        metadata = {"job_name": job_name, "run_id": run_id, "partition": partition}
        if not self.uses_slack:
            return self._write_outbox(
                f"run-failure-{run_id}", {"channel": self.oncall_channel, "text": text, "blocks": blocks} | metadata
            )
        payload = {key: value for key, value in metadata.items() if value is not None}
        return self._post(self.oncall_channel, text, blocks, EVENT_TYPE_RUN_FAILURE, payload)

    def channel_for_segment(self, segment: str | None) -> str:
        return self.segment_channels.get(segment or "", self.fallback_channel)

    def _addressee(self, msg: AlertMessage) -> str:
        """Who an alert is for before any lookup: the owner's email, else the segment's channel."""
        return (msg.owner_email or "").strip() or self.channel_for_segment(msg.segment)

    # ------------------------------------------------------------------ Slack

    def _token(self) -> str | None:
        token = (self.bot_token or "").strip()
        return token or None

    def _post(self, channel: str, text: str, blocks: list[dict], event_type: str, payload: dict) -> Delivery:
        try:
            response = self._client(for_posting=True).chat_postMessage(
                channel=channel,
                text=text,
                blocks=blocks,
                metadata={"event_type": event_type, "event_payload": payload},
                unfurl_links=False,
                unfurl_media=False,
            )
        except Exception as err:  # noqa: BLE001 - every failure becomes a failed delivery
            return self._failed(channel, self._reason(err, posting=True))
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

    def _client(self, for_posting: bool) -> WebClient:
        client = self._post_client if for_posting else self._lookup_client
        if client is None:
            handlers: list[RetryHandler] = [
                _RateLimitRetry(max_retry_count=self.rate_limit_retries),
                ServerErrorRetryHandler(max_retry_count=self.server_error_retries),
            ]
            if not for_posting:
                handlers.append(ConnectionErrorRetryHandler(max_retry_count=2))
            client = WebClient(
                token=self._token(),
                base_url=self.api_url,
                timeout=self.timeout_seconds,
                retry_handlers=handlers,
            )
            if for_posting:
                self._post_client = client
            else:
                self._lookup_client = client
        return client

    def _failed(self, channel: str, reason: str) -> Delivery:
        return Delivery(destination="slack", channel=channel, status="failed", reason=self._redact(reason))

    def _reason(self, err: Exception, posting: bool = False) -> str:
        """A short reason for `err`, free of the token; `posting` says whether Slack may have posted."""
        maybe_posted = "; Slack may have posted it" if posting else ""
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
            return f"no answer within {self.timeout_seconds} s{maybe_posted}"
        if isinstance(err, (http.client.RemoteDisconnected, ConnectionError, http.client.IncompleteRead)):
            return f"connection lost before Slack answered{maybe_posted}"
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

    def _write_outbox(self, key: str, content: dict) -> Delivery:
        """Write `content` as `<outbox_dir>/<key>.json` atomically; the same key replaces the file."""
        folder = Path(self.outbox_dir)
        path = folder / f"{_safe_name(key)}.json"
        channel = str(content.get("channel") or "")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.stem}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    json.dump(content, handle, ensure_ascii=False, indent=2, default=str)
                    handle.write("\n")
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as err:
            reason = f"could not write {path}: {err.strerror or type(err).__name__}"
            return Delivery(destination="outbox", channel=channel, status="failed", reason=reason, path=str(path))
        # Without Slack, the message is shown where the operator is looking: text, recipient, file.
        text = " ".join(str(content.get("text") or "").split())
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
