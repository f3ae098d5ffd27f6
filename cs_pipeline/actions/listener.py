"""`cs-pipeline slack-listen`: the buttons' clicks and the App Home, over Slack Socket Mode.

Socket Mode needs no public URL: the listener opens a websocket to Slack (`apps.connections.open`
with the app-level token, `SLACK_APP_TOKEN`, xapp-…) and Slack sends it the clicks; slack-sdk's
built-in client reconnects by itself. Each envelope is acknowledged after its click is stored,
so a listener killed mid-click gets it again, and the store's key applies it once.

Only the account's owner (their Slack user, looked up by email) or a CS lead
(`CS_PIPELINE_SLACK_LEADS`: Slack user ids, emails or a user group id, comma-separated) may act;
anyone else gets an ephemeral "not yours". Clicks land in the actions store, never in the DuckDB
warehouse, so they are stored while a daily run holds it.
"""

from __future__ import annotations

import logging
import threading

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from cs_pipeline import settings
from cs_pipeline.actions import clicks
from cs_pipeline.actions.store import ActionsStore, now, tasks

log = logging.getLogger("cs_pipeline.slack_listen")
HOME_TASKS = 40  # a Home tab holds 100 blocks


class Listener:
    def __init__(self, store: ActionsStore, bot_token: str, app_token: str, api_url: str = "https://slack.com/api/",
                 leads: str = ""):
        self.store = store
        self.web = WebClient(token=bot_token, base_url=api_url, timeout=10)
        self.socket = SocketModeClient(app_token=app_token, web_client=self.web, auto_reconnect_enabled=True)
        self.socket.socket_mode_request_listeners.append(self.handle)
        self.leads = {x.strip() for x in leads.split(",") if x.strip()}
        self._ids: dict[str, str | None] = {}
        self.applied = 0
        self.refused = 0
        self.lock = threading.Lock()

    def start(self) -> None:
        self.socket.connect()

    def close(self) -> None:
        self.socket.close()

    # ------------------------------------------------------------------ envelopes

    def handle(self, client: SocketModeClient, req: SocketModeRequest) -> None:
        try:
            if req.type == "interactive":
                for click in clicks.parse(req.payload):
                    self.on_click(click)
            elif req.type == "events_api" and (req.payload.get("event") or {}).get("type") == "app_home_opened":
                self.publish_home(req.payload["event"]["user"])
        except Exception:  # noqa: BLE001 - not acknowledged: Slack sends it again
            log.exception("envelope %s not applied; Slack will send it again", req.envelope_id)
            return
        client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))

    def on_click(self, click: clicks.Click) -> None:
        email, _ = clicks.owner_email(self.store, click.alert_id)
        if not self.may_act(click.user_id, email):
            self.refused += 1
            if click.channel:
                owner = f"<@{self._user_id(email)}>" if email and self._user_id(email) else (email or "its owner")
                self.web.chat_postEphemeral(
                    channel=click.channel, user=click.user_id,
                    text=f"Not yours: this alert belongs to {owner}. Only its owner or a CS lead can act on it.")
            return
        today, at = settings.today(), now()
        with self.lock:
            if clicks.apply(self.store, click, today):
                self.applied += 1
        if click.channel and click.message_ts and click.blocks:
            blocks = clicks.updated_blocks(click.blocks, click, today, at)
            self.web.chat_update(channel=click.channel, ts=click.message_ts, blocks=blocks,
                                 text=clicks.done_text(click, today, at))

    # ------------------------------------------------------------------ who may act

    def may_act(self, user_id: str, owner_email: str | None) -> bool:
        if owner_email and self._user_id(owner_email) == user_id:
            return True
        return user_id in self._lead_ids()

    def _user_id(self, email: str) -> str | None:
        key = email.strip().lower()
        if key not in self._ids:
            try:
                self._ids[key] = self.web.users_lookupByEmail(email=email)["user"]["id"]
            except SlackApiError:
                self._ids[key] = None
        return self._ids[key]

    def _lead_ids(self) -> set[str]:
        ids = set()
        for lead in self.leads:
            if "@" in lead:
                ids.add(self._user_id(lead) or "")
            elif lead.startswith("S"):  # a user group
                ids.update(self.web.usergroups_users_list(usergroup=lead).get("users") or [])
            else:
                ids.add(lead)
        return ids - {""}

    # ------------------------------------------------------------------ App Home

    def publish_home(self, user_id: str) -> None:
        """The CSM's open tasks (one per open alert), most urgent due date first."""
        profile = (self.web.users_info(user=user_id).get("user") or {}).get("profile") or {}
        email = (profile.get("email") or "").lower()
        mine = [t for t in self.store.rows(tasks, tasks.c.status == "open") if (t["owner_email"] or "").lower() == email]
        mine.sort(key=lambda t: (t["due_date"] is None, t["due_date"], t["task_id"]))
        blocks = [{"type": "header", "text": {"type": "plain_text", "text": f"Your open alerts and tasks ({len(mine)})"}}]
        for task in mine[:HOME_TASKS]:
            due = task["due_date"].isoformat() if task["due_date"] else "—"
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text":
                           f"*{task['title'] or task['task_id']}*\nDue {due} · priority {task['priority'] or '—'} · "
                           f"account `{task['account_id']}` · alert `{task['alert_id']}`"}})
        if not mine:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "Nothing open. :tada:"}})
        self.web.views_publish(user_id=user_id, view={"type": "home", "blocks": blocks})


def run_forever(listener: Listener, stop: threading.Event) -> None:
    """Connect and serve until `stop` is set; the client reconnects by itself after a drop."""
    listener.start()
    try:
        stop.wait()
    finally:
        listener.close()
