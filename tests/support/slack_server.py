"""A loopback Slack-compatible Web API for tests and benchmarks.

    with SlackServer(users={"alice@example.com": "U001"}, token="xoxb-test") as server:
        resource = SlackResource(bot_token="xoxb-test", api_url=server.url)
        ...
        assert server.messages[0]["channel_id"].startswith("D")

It answers `auth.test`, `users.lookupByEmail`, `chat.postMessage`, `conversations.open`,
`conversations.list`, `conversations.history` (with `oldest` and `include_all_metadata`),
`conversations.replies` (a thread with the files shared in it), and the three steps of
slack-sdk's `files_upload_v2` (`files.getUploadURLExternal`, a POST of the bytes to the upload
URL it returns, `files.completeUploadExternal`; uploaded files are in `files`) with the shapes of the real
API (https://docs.slack.dev/reference/methods), checks the Block Kit limits Slack enforces
(`invalid_blocks`), and records every accepted message. `fail_next` injects the faults a real
connection sees: rate limits, server errors, and connections dropped before or after Slack
accepted a message.

It only listens on 127.0.0.1 on a free port, serves from a daemon thread, bounds request bodies
and held connections, and stops when the `with` block ends.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
from collections import defaultdict, deque
from urllib.parse import parse_qs, urlsplit

from tests.support.loopback import JsonHandler, LoopbackServer

FAULT_KINDS = ("rate_limited", "server_error", "drop_after_accept", "drop_before_accept", "timeout")
MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_HOLD_SECONDS = 30.0
TEAM_ID = "T0000TEST"
BOT_USER_ID = "U0000BOT"
# Slack's undocumented cap on all the text in one message's blocks (about 12,000 characters).
MAX_BLOCKS_TEXT = 12_000
_CHANNEL_ID = re.compile(r"[CDG][A-Z0-9]{8,}")


class SlackServer(LoopbackServer):
    """A Slack-compatible Web API on loopback; see the module docstring."""

    def __init__(
        self,
        users: dict[str, str] | None = None,
        token: str = "xoxb-test",
        channels: dict[str, str] | None = None,
        latency_seconds: float = 0.0,
        hold_seconds: float = 2.0,
        per_channel_limit_per_second: float | None = None,
    ):
        """
        users: email -> user id, the people `users.lookupByEmail` finds.
        token: the one bot token accepted; any other gets `invalid_auth`.
        channels: channel name (without '#') -> id; when given, any other channel is
            `channel_not_found`. When None, every channel name exists.
        latency_seconds: added to every answer, to measure a client under realistic latency.
        hold_seconds: how long a `timeout` fault keeps the connection open without answering.
        per_channel_limit_per_second: when set, a chat.postMessage to a channel sooner than
            1/limit s after the last one accepted there is refused with HTTP 429 and `Retry-After`,
            as Slack limits posting to about 1 message per second per channel.
        """
        super().__init__()
        self.users = {email.lower(): user_id for email, user_id in (users or {}).items()}
        self.token = token
        self.channels = channels
        self.latency_seconds = latency_seconds
        self.hold_seconds = min(hold_seconds, MAX_HOLD_SECONDS)
        self.messages: list[dict] = []
        self.requests: list[dict] = []  # every API call: method, outcome (HTTP status or fault kind)
        self.per_channel_limit_per_second = per_channel_limit_per_second
        self.rate_limited_posts = 0  # posts refused by the per-channel limit
        self.admitted_at: dict[str, list[float]] = defaultdict(list)  # channel id -> monotonic times of posts let through
        self._last_post: dict[str, float] = {}
        self.revoked_error: str | None = None  # set to e.g. "account_inactive" to refuse every token
        self._lock = threading.Lock()
        self._faults: dict[str, deque[str]] = defaultdict(deque)
        self._ts_counter = 0
        self.files: dict[str, dict] = {}  # file id -> filename, length, data, title, channel_id, thread_ts, ...
        self._upload_keys: dict[str, str] = {}  # the opaque part of an upload URL -> file id

    @property
    def url(self) -> str:
        """The base URL to pass as `api_url` (ends in `/api/`)."""
        return f"{self.base_url}/api/"

    # ------------------------------------------------------------------ test controls

    def fail_next(self, method: str, n: int = 1, kind: str = "rate_limited") -> None:
        """Make the next `n` calls of `method` (e.g. "chat.postMessage") fail with `kind`.

        rate_limited: HTTP 429, `Retry-After: 1`, `{"ok": false, "error": "ratelimited"}`.
        server_error: HTTP 500, nothing recorded.
        drop_after_accept: the message is recorded, then the connection closes without an answer.
        drop_before_accept: the connection closes without an answer and nothing is recorded.
        timeout: the connection stays open without an answer for `hold_seconds`, nothing recorded.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; choose one of {', '.join(FAULT_KINDS)}")
        with self._lock:
            self._faults[method].extend([kind] * n)

    def calls(self, method: str) -> int:
        """How many requests `method` received, including the ones that failed."""
        with self._lock:
            return sum(1 for request in self.requests if request["method"] == method)

    def messages_to(self, channel: str) -> list[dict]:
        with self._lock:
            return [m for m in self.messages if channel in (m["channel"], m["channel_id"])]

    # ------------------------------------------------------------------ API (called by the handler)

    def _next_fault(self, method: str) -> str | None:
        with self._lock:
            queue = self._faults.get(method)
            return queue.popleft() if queue else None

    def _log(self, method: str, outcome: int | str) -> None:
        with self._lock:
            self.requests.append({"method": method, "outcome": outcome})

    def _auth_error(self, token: str | None) -> str | None:
        if not token:
            return "not_authed"
        if token != self.token:
            return "invalid_auth"
        return self.revoked_error

    def auth_test(self, params: dict) -> dict:
        return {
            "ok": True,
            "url": "https://cs-pipeline-test.slack.com/",
            "team": "cs_pipeline test",
            "user": "cs-pipeline",
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": "B0000BOT",
            "is_enterprise_install": False,
        }

    def users_lookup_by_email(self, params: dict) -> dict:
        email = str(params.get("email") or "")
        if not email:
            return {"ok": False, "error": "invalid_arguments"}
        user_id = self.users.get(email.lower())
        if user_id is None:
            return {"ok": False, "error": "users_not_found"}
        name = email.split("@")[0]
        return {
            "ok": True,
            "user": {
                "id": user_id,
                "team_id": TEAM_ID,
                "name": name,
                "deleted": False,
                "real_name": name,
                "is_bot": False,
                "profile": {"email": email, "real_name": name, "display_name": name},
            },
        }

    def chat_post_message(self, params: dict) -> dict:
        requested = str(params.get("channel") or "")
        channel_id = self._channel_id(requested)
        if channel_id is None:
            return {"ok": False, "error": "channel_not_found"}
        blocks = params.get("blocks")
        if isinstance(blocks, str):  # form-encoded bodies carry blocks as a JSON string
            try:
                blocks = json.loads(blocks)
            except ValueError:
                return {"ok": False, "error": "invalid_blocks_format"}
        text = params.get("text")
        if not text and not blocks:
            return {"ok": False, "error": "no_text"}
        if text and len(text) > 40000:
            return {"ok": False, "error": "msg_too_long"}
        if blocks:
            errors = block_errors(blocks)
            if errors:
                return {"ok": False, "error": "invalid_blocks", "errors": errors}
            if blocks_text_length(blocks) > MAX_BLOCKS_TEXT:
                return {"ok": False, "error": "msg_blocks_too_long"}
        metadata = params.get("metadata")
        if isinstance(metadata, str):
            try:
                metadata = json.loads(metadata)
            except ValueError:
                return {"ok": False, "error": "invalid_metadata_format"}
        with self._lock:
            self._ts_counter += 1
            ts = f"{int(time.time())}.{self._ts_counter:06d}"
            message = {
                "channel": requested,
                "channel_id": channel_id,
                "text": text,
                "blocks": blocks,
                "metadata": metadata,
                "ts": ts,
            }
            self.messages.append(message)
        shown = {"type": "message", "user": BOT_USER_ID, "bot_id": "B0000BOT", "text": text or "", "ts": ts}
        if blocks:
            shown["blocks"] = blocks
        if metadata:
            shown["metadata"] = metadata
        return {"ok": True, "channel": channel_id, "ts": ts, "message": shown}

    def channel_wait(self, params: dict) -> float:
        """Seconds until the channel of this chat.postMessage may be posted to again (0: now)."""
        if not self.per_channel_limit_per_second:
            return 0.0
        channel_id = self._channel_id(str(params.get("channel") or ""))
        if channel_id is None:
            return 0.0
        now = time.monotonic()
        with self._lock:
            wait = self._last_post.get(channel_id, -1e9) + 1.0 / self.per_channel_limit_per_second - now
            if wait > 0:
                self.rate_limited_posts += 1
                return wait
            self._last_post[channel_id] = now
            self.admitted_at[channel_id].append(now)
            return 0.0

    def conversations_open(self, params: dict) -> dict:
        users = str(params.get("users") or "")
        channel_id = self._channel_id(users) if users[:1] in ("U", "W") else None
        if channel_id is None:
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "channel": {"id": channel_id}}

    def conversations_list(self, params: dict) -> dict:
        with self._lock:
            names = {m["channel"].lstrip("#"): m["channel_id"] for m in self.messages if m["channel"].startswith("#")}
        names.update(self.channels or {})
        return {"ok": True, "channels": [{"id": i, "name": n} for n, i in names.items()], "response_metadata": {"next_cursor": ""}}

    def conversations_history(self, params: dict) -> dict:
        """Messages of a channel newest first, after `oldest`; metadata only with include_all_metadata."""
        channel_id = str(params.get("channel") or "")
        oldest = float(params.get("oldest") or 0)
        with_metadata = str(params.get("include_all_metadata") or "").lower() in ("1", "true")
        with self._lock:
            found = [m for m in self.messages if m["channel_id"] == channel_id and float(m["ts"]) > oldest]
        shown = []
        for m in reversed(found):
            item = {"type": "message", "user": BOT_USER_ID, "bot_id": "B0000BOT", "text": m["text"] or "", "ts": m["ts"]}
            if with_metadata and m["metadata"]:
                item["metadata"] = m["metadata"]
            shown.append(item)
        return {"ok": True, "messages": shown, "has_more": False, "response_metadata": {"next_cursor": ""}}

    def conversations_replies(self, params: dict) -> dict:
        """A thread: its parent message, then the files shared in it (a message each, with `files`)."""
        channel_id, ts = str(params.get("channel") or ""), str(params.get("ts") or "")
        with self._lock:
            parent = [m for m in self.messages if m["channel_id"] == channel_id and m["ts"] == ts]
            shared = [f for f in self.files.values()
                      if f["completed"] and f.get("channel_id") == channel_id and f.get("thread_ts") == ts]
        if not parent:
            return {"ok": False, "error": "thread_not_found"}
        shown = [{"type": "message", "user": BOT_USER_ID, "text": parent[0]["text"] or "", "ts": ts, "thread_ts": ts}]
        shown += [{"type": "message", "user": BOT_USER_ID, "text": "", "ts": f["shared_ts"], "thread_ts": ts,
                   "files": [{"id": f["id"], "name": f["filename"], "title": f["title"]}]}
                  for f in sorted(shared, key=lambda f: f["shared_ts"])]
        return {"ok": True, "messages": shown, "has_more": False, "response_metadata": {"next_cursor": ""}}

    def files_get_upload_url_external(self, params: dict) -> dict:
        """Step 1 of an upload: a file id and a one-time URL to POST the bytes to."""
        filename = str(params.get("filename") or "")
        try:
            length = int(params.get("length") or 0)
        except (TypeError, ValueError):
            length = 0
        if not filename or length <= 0:
            return {"ok": False, "error": "invalid_arguments"}
        with self._lock:
            self._ts_counter += 1
            file_id = "F" + _stable_id(f"{filename}-{self._ts_counter}")
            key = _stable_id(f"upload-{file_id}") + _stable_id(f"key-{self._ts_counter}")
            self._upload_keys[key] = file_id
            self.files[file_id] = {"id": file_id, "filename": filename, "length": length, "alt_txt": params.get("alt_txt"),
                                   "data": None, "completed": False}
        return {"ok": True, "upload_url": f"{self.base_url}/upload/v1/{key}", "file_id": file_id}

    def receive_upload(self, key: str, data: bytes) -> tuple[int, str]:
        """Step 2: the bytes POSTed to the upload URL (answered in plain text, as files.slack.com does)."""
        with self._lock:
            file_id = self._upload_keys.get(key)
            if file_id is None:
                return 404, "Not Found"
            self.files[file_id]["data"] = data
        return 200, f"OK - {len(data)}"

    def files_complete_upload_external(self, params: dict) -> dict:
        """Step 3: finish the uploads and share them in `channel_id` (in `thread_ts`'s thread)."""
        raw = params.get("files")
        try:
            items = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            return {"ok": False, "error": "invalid_json"}
        if not isinstance(items, list) or not items or not all(isinstance(i, dict) and i.get("id") for i in items):
            return {"ok": False, "error": "invalid_arguments"}
        requested = str(params.get("channel_id") or "")
        channel_id = self._channel_id(requested) if requested else None
        if requested and channel_id is None:
            return {"ok": False, "error": "channel_not_found"}
        thread_ts = params.get("thread_ts") or None
        if thread_ts and not any(m["channel_id"] == channel_id and m["ts"] == thread_ts for m in self.messages):
            return {"ok": False, "error": "invalid_thread_ts"}
        shown = []
        with self._lock:
            for item in items:
                stored = self.files.get(item["id"])
                if stored is None or stored["data"] is None:
                    return {"ok": False, "error": "file_not_found"}
                if len(stored["data"]) != stored["length"]:
                    return {"ok": False, "error": "file_upload_size_mismatch"}
            for item in items:
                stored = self.files[item["id"]]
                title = item.get("title") or stored["filename"]
                self._ts_counter += 1
                stored.update(completed=True, title=title, channel_id=channel_id, thread_ts=thread_ts,
                              shared_ts=f"{int(time.time())}.{self._ts_counter:06d}",
                              initial_comment=params.get("initial_comment"), mimetype=_mimetype(stored["filename"]))
                # Slack answers only each file's id and title; the share appears in the channel.
                shown.append({"id": stored["id"], "title": title})
        return {"ok": True, "files": shown}

    def files_in(self, channel: str) -> list[dict]:
        """Completed uploads shared in `channel` (a name or an id)."""
        channel_id = self._channel_id(channel) if not channel.startswith(("C", "D", "G")) else channel
        with self._lock:
            return [f for f in self.files.values() if f["completed"] and f.get("channel_id") == channel_id]

    def _channel_id(self, requested: str) -> str | None:
        if not requested:
            return None
        if requested[0] in "UW":  # a user id: Slack opens (or reuses) the DM with that user
            if requested not in self.users.values():
                return None
            return "D" + _stable_id(requested)
        if _CHANNEL_ID.fullmatch(requested):
            if self.channels is not None and requested not in self.channels.values():
                return None
            return requested
        name = requested.lstrip("#")
        if self.channels is not None:
            return self.channels.get(name)
        return "C" + _stable_id(name)


ROUTES = {
    "auth.test": SlackServer.auth_test,
    "users.lookupByEmail": SlackServer.users_lookup_by_email,
    "chat.postMessage": SlackServer.chat_post_message,
    "conversations.open": SlackServer.conversations_open,
    "conversations.list": SlackServer.conversations_list,
    "conversations.history": SlackServer.conversations_history,
    "conversations.replies": SlackServer.conversations_replies,
    "files.getUploadURLExternal": SlackServer.files_get_upload_url_external,
    "files.completeUploadExternal": SlackServer.files_complete_upload_external,
}
UPLOAD_PATH = "/upload/v1/"


class _Handler(JsonHandler):
    slack: SlackServer

    def do_GET(self):
        self._serve()

    def do_POST(self):
        if urlsplit(self.path).path.startswith(UPLOAD_PATH):
            return self._serve_upload()
        self._serve()

    def _serve_upload(self):
        """The upload URL: raw bytes in, `OK - <length>` out; no token (the URL is the secret)."""
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.slack._log("upload", 413)
            self.close_connection = True
            return self._reply_text(413, "Request Entity Too Large")
        data = self.rfile.read(length) if length else b""
        status, text = self.slack.receive_upload(urlsplit(self.path).path[len(UPLOAD_PATH):], data)
        self.slack._log("upload", status)
        return self._reply_text(status, text)

    def _reply_text(self, status: int, text: str) -> None:
        data = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _serve(self):
        split = urlsplit(self.path)
        method = split.path.rsplit("/", 1)[-1]
        length = int(self.headers.get("Content-Length") or 0)
        if not split.path.startswith("/api/") or method not in ROUTES:
            self._drain(length)
            self.slack._log(method, 404)
            return self._reply(404, {"ok": False, "error": "unknown_method"})
        if length > MAX_BODY_BYTES:
            self.slack._log(method, 413)
            self.close_connection = True
            return self._reply(413, {"ok": False, "error": "request_too_large"})
        body = self.rfile.read(length) if length else b""
        params = _params(split.query, self.headers.get("Content-Type", ""), body)
        if self.slack.latency_seconds:
            time.sleep(self.slack.latency_seconds)

        fault = self.slack._next_fault(method)
        if fault is not None:
            self.slack._log(method, fault)
        if fault == "rate_limited":
            return self._reply(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "1"})
        if fault is None and method == "chat.postMessage":
            wait = self.slack.channel_wait(params)
            if wait > 0:
                self.slack._log(method, 429)
                return self._reply(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(max(1, math.ceil(wait)))})
        if fault == "server_error":
            return self._reply(500, {"ok": False, "error": "internal_error"})
        if fault == "drop_before_accept":
            return self._drop()
        if fault == "timeout":
            self.slack._stopping.wait(self.slack.hold_seconds)
            return self._drop()

        token = _bearer(self.headers.get("Authorization")) or params.get("token")
        error = self.slack._auth_error(token)
        if error is not None:
            answer = {"ok": False, "error": error}
        else:
            answer = ROUTES[method](self.slack, params)
        if fault == "drop_after_accept":
            return self._drop()
        self.slack._log(method, 200)
        headers = {"X-OAuth-Scopes": "chat:write,users:read,users:read.email"}
        return self._reply(200, answer, headers)


    def _drop(self) -> None:
        """Close the connection without a byte of answer, as a dropped network would."""
        self.close_connection = True

    def _drain(self, length: int) -> None:
        if 0 < length <= MAX_BODY_BYTES:
            self.rfile.read(length)


def block_errors(blocks: object) -> list[str]:
    """The Block Kit limits Slack enforces on chat.postMessage, as its `errors` list words them."""
    if not isinstance(blocks, list):
        return ["blocks must be an array"]
    errors = []
    if len(blocks) > 50:
        errors.append(f"no more than 50 items allowed [json-pointer:/blocks] ({len(blocks)} given)")
    for i, block in enumerate(blocks):
        where = f"[json-pointer:/blocks/{i}"
        kind = block.get("type") if isinstance(block, dict) else None
        text = block.get("text") if isinstance(block, dict) else None
        text_value = text.get("text", "") if isinstance(text, dict) else ""
        if kind == "header":
            if not text_value or len(text_value) > 150:
                errors.append(f"must be 1-150 characters {where}/text/text]")
        elif kind == "section":
            fields = block.get("fields") or []
            if text is None and not fields:
                errors.append(f"must provide text or fields {where}]")
            if text is not None and not 0 < len(text_value) <= 3000:
                errors.append(f"must be 1-3000 characters {where}/text/text]")
            if len(fields) > 10:
                errors.append(f"no more than 10 items allowed {where}/fields]")
            for j, field in enumerate(fields):
                if not 0 < len(field.get("text", "")) <= 2000:
                    errors.append(f"must be 1-2000 characters {where}/fields/{j}/text]")
        elif kind == "context":
            elements = block.get("elements") or []
            if not 0 < len(elements) <= 10:
                errors.append(f"must have 1-10 elements {where}/elements]")
        elif kind == "actions":
            elements = block.get("elements") or []
            if not 0 < len(elements) <= 25:
                errors.append(f"must have 1-25 elements {where}/elements]")
        elif kind not in ("divider", "image", "rich_text", "input", "file", "video", "markdown"):
            errors.append(f"unknown block type {kind!r} {where}]")
    return errors


def blocks_text_length(node: object) -> int:
    """All the characters of all `text` strings in `node`, at any depth."""
    if isinstance(node, list):
        return sum(blocks_text_length(item) for item in node)
    if isinstance(node, dict):
        return sum(len(value) if key == "text" and isinstance(value, str) else blocks_text_length(value)
                   for key, value in node.items())
    return 0


def _params(query: str, content_type: str, body: bytes) -> dict:
    """Arguments from the query string and the body (JSON or form), as Slack reads them."""
    params: dict = {key: values[-1] for key, values in parse_qs(query).items()}
    if not body:
        return params
    if content_type.startswith("application/json"):
        try:
            payload = json.loads(body)
        except ValueError:
            payload = {}
        if isinstance(payload, dict):
            params.update(payload)
    elif content_type.startswith("application/x-www-form-urlencoded"):
        params.update({key: values[-1] for key, values in parse_qs(body.decode("utf-8")).items()})
    return params


def _bearer(header: str | None) -> str | None:
    if header and header.startswith("Bearer "):
        return header[len("Bearer ") :].strip()
    return None


def _mimetype(filename: str) -> str:
    return {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "pdf": "application/pdf"}.get(
        filename.rsplit(".", 1)[-1].lower(), "application/octet-stream")


def _stable_id(name: str) -> str:
    return hashlib.sha1(name.encode("utf-8")).hexdigest()[:10].upper()


# Defined after the handler it serves (the handler refers back to it as `self.slack`).
SlackServer.handler_class = _Handler
SlackServer.handler_attribute = "slack"
SlackServer.thread_name = "slack-server"
