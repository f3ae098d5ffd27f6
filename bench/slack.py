"""The loopback Slack server of the tests, with Slack's chat.postMessage limit: 1 message per
second per channel. A message over the limit gets HTTP 429 and `Retry-After: 1`, as from Slack;
the pipeline's Slack client waits and retries it, so the dispatch benchmark measures a client that
honours the limit. Used only when tests/support/slack_server.py has no `per_channel_limit_per_second`
of its own (see `bench.harness.slack_server`)."""

from __future__ import annotations

import io
import threading
import time
from http.server import ThreadingHTTPServer
from urllib.parse import urlsplit

from tests.support.slack_server import SlackServer, _Handler, _params


class RateLimitedSlackServer(SlackServer):
    def __init__(self, *args, per_channel_interval: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.per_channel_interval = per_channel_interval
        self.rate_limited = 0
        self._last_post: dict[str, float] = {}
        self._rate_lock = threading.Lock()

    def admit(self, channel_id: str) -> bool:
        """True when `channel_id` may take a message now (and books the slot)."""
        now = time.monotonic()
        with self._rate_lock:
            last = self._last_post.get(channel_id)
            if last is not None and now - last < self.per_channel_interval:
                self.rate_limited += 1
                return False
            self._last_post[channel_id] = now
            return True

    def start(self) -> "RateLimitedSlackServer":
        handler = type("Handler", (_LimitedHandler,), {"slack": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="slack-server", daemon=True
        )
        self._thread.start()
        return self


class _LimitedHandler(_Handler):
    slack: RateLimitedSlackServer

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if 0 < length <= 4 * 1024 * 1024 else b""
        split = urlsplit(self.path)
        if split.path.endswith("/chat.postMessage"):
            params = _params(split.query, self.headers.get("Content-Type", ""), body)
            channel_id = self.slack._channel_id(str(params.get("channel") or ""))
            if channel_id is not None and not self.slack.admit(channel_id):
                if self.slack.latency_seconds:
                    time.sleep(self.slack.latency_seconds)
                self.slack._log("chat.postMessage", 429)
                return self._reply(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "1"})
        socket_file = self.rfile
        self.rfile = io.BufferedReader(io.BytesIO(body))  # _serve reads the body we already read
        try:
            self._serve()
        finally:
            self.rfile = socket_file
