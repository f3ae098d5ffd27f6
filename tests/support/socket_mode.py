"""The loopback Slack server with Socket Mode: `apps.connections.open` and a local websocket.

    with SocketModeSlackServer(users={...}, token="xoxb-…", app_token="xapp-…") as server:
        envelope_id = server.click(payload)          # an `interactive` envelope, as Slack sends it
        server.wait_for_ack(envelope_id)

Like Slack, it sends each envelope to the connected client and keeps it until the client
acknowledges it (`{"envelope_id": …}`); an envelope not acknowledged when its connection closes is
sent again on the next connection. It also answers and records `chat.update`,
`chat.postEphemeral`, `views.publish`, `users.info` and `usergroups.users.list`.
"""

from __future__ import annotations

import itertools
import json
import threading
import time

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import serve

from tests.support import slack_server
from tests.support.slack_server import SlackServer


class SocketModeSlackServer(SlackServer):
    def __init__(self, *args, app_token: str = "xapp-test", groups: dict[str, list[str]] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.app_token = app_token
        self.groups = groups or {}
        self.updates: list[dict] = []
        self.ephemerals: list[dict] = []
        self.views: list[dict] = []
        self.acks: list[str] = []
        self.connections = 0
        self._pending: dict[str, dict] = {}  # envelope id -> envelope, until acknowledged
        self._sent_on: dict[str, int] = {}  # envelope id -> the connection it was last sent on
        self._ids = itertools.count(1)
        self._live: set = set()  # the open websockets
        self._cond = threading.Condition()
        self._ws = serve(self._session, "127.0.0.1", 0)
        self._ws_thread = threading.Thread(target=self._ws.serve_forever, daemon=True)

    def start(self):
        super().start()
        self._ws_thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._ws.shutdown()
        super().stop()

    @property
    def ws_url(self) -> str:
        host, port = self._ws.socket.getsockname()[:2]
        return f"ws://{host}:{port}/link"

    # ------------------------------------------------------------------ test controls

    def click(self, payload: dict) -> str:
        return self._enqueue("interactive", payload)

    def event(self, event: dict) -> str:
        return self._enqueue("events_api", {"type": "event_callback", "event": event})

    def disconnect_all(self) -> None:
        """Close every open websocket, as Slack does when it refreshes a connection."""
        with self._cond:
            live = list(self._live)
        for ws in live:
            ws.close()

    def wait_for_ack(self, envelope_id: str, timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: envelope_id in self.acks, timeout)

    def wait_for(self, predicate, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.02)
        return False

    def _enqueue(self, kind: str, payload: dict) -> str:
        envelope_id = f"env-{next(self._ids)}"
        with self._cond:
            self._pending[envelope_id] = {"envelope_id": envelope_id, "type": kind, "payload": payload,
                                          "accepts_response_payload": kind == "interactive"}
            self._cond.notify_all()
        return envelope_id

    # ------------------------------------------------------------------ the websocket

    def _session(self, ws) -> None:
        with self._cond:
            self.connections += 1
            number = self.connections
            self._live.add(ws)
        ws.send(json.dumps({"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A0000TEST"}}))
        try:
            while not self._stopping.is_set():
                with self._cond:
                    due = [e for i, e in self._pending.items() if self._sent_on.get(i) != number]
                    for envelope in due:
                        self._sent_on[envelope["envelope_id"]] = number
                for envelope in due:
                    ws.send(json.dumps(envelope))
                try:
                    message = ws.recv(timeout=0.05)
                except TimeoutError:
                    continue
                envelope_id = (json.loads(message) if isinstance(message, str) else {}).get("envelope_id")
                if envelope_id:
                    with self._cond:
                        self.acks.append(envelope_id)
                        self._pending.pop(envelope_id, None)
                        self._cond.notify_all()
        except ConnectionClosed:
            pass
        finally:
            with self._cond:
                self._live.discard(ws)

    # ------------------------------------------------------------------ Web API methods

    def _auth_error(self, token: str | None) -> str | None:
        return None if token == self.app_token else super()._auth_error(token)

    def apps_connections_open(self, params: dict) -> dict:
        return {"ok": True, "url": self.ws_url}

    def chat_update(self, params: dict) -> dict:
        blocks = params.get("blocks")
        blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
        errors = slack_server.block_errors(blocks) if blocks else []
        if errors:
            return {"ok": False, "error": "invalid_blocks", "errors": errors}
        with self._lock:
            self.updates.append({"channel": params.get("channel"), "ts": params.get("ts"), "text": params.get("text"),
                                 "blocks": blocks})
        return {"ok": True, "channel": params.get("channel"), "ts": params.get("ts")}

    def chat_post_ephemeral(self, params: dict) -> dict:
        with self._lock:
            self.ephemerals.append({"channel": params.get("channel"), "user": params.get("user"), "text": params.get("text")})
        return {"ok": True, "message_ts": f"{time.time():.6f}"}

    def views_publish(self, params: dict) -> dict:
        view = params.get("view")
        with self._lock:
            self.views.append({"user_id": params.get("user_id"), "view": json.loads(view) if isinstance(view, str) else view})
        return {"ok": True}

    def users_info(self, params: dict) -> dict:
        user = params.get("user")
        email = next((e for e, u in self.users.items() if u == user), None)
        if email is None:
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "user": {"id": user, "profile": {"email": email}}}

    def usergroups_users_list(self, params: dict) -> dict:
        return {"ok": True, "users": self.groups.get(str(params.get("usergroup")), [])}


slack_server.ROUTES.update({
    "apps.connections.open": SocketModeSlackServer.apps_connections_open,
    "chat.update": SocketModeSlackServer.chat_update,
    "chat.postEphemeral": SocketModeSlackServer.chat_post_ephemeral,
    "views.publish": SocketModeSlackServer.views_publish,
    "users.info": SocketModeSlackServer.users_info,
    "usergroups.users.list": SocketModeSlackServer.usergroups_users_list,
})
