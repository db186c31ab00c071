"""Drives the real Slack adapter against the fake Slack: Slack-shaped payloads, signed requests, connect."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import socket
import time
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

from adapters.slack_adapter import SlackAdapter
from bot.config import SlackSection
from bot.core import Bot
from tests.fake_slack import BOT_USER, TEAM, FakeSlack

SECRET = "test-signing-secret"
CHANNEL = "C100"
LOG_CHANNEL = "C900"
DM = "D200"
EDIT_INTERVAL = 0.2
_event_ids = itertools.count(1)


def free_port() -> int:
    """A TCP port nobody is listening on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def message_event(ts: str, text: str, user: str = "UALICE", channel: str = CHANNEL, *, thread_ts: str | None = None,
                  mention: bool = False, **extra: Any) -> dict[str, Any]:  # fmt: skip
    """An app_mention (mention=True) or message event."""
    event = {"type": "app_mention" if mention else "message", "user": user, "text": text, "ts": ts, "channel": channel,
             "event_ts": ts, "channel_type": "im" if channel.startswith("D") else "channel", **extra}  # fmt: skip
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def event_body(event: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    """The Events API envelope Slack POSTs (or pushes over Socket Mode)."""
    return {"token": "legacy", "team_id": TEAM, "api_app_id": "A1", "event": event, "type": "event_callback",
            "event_id": event_id or f"Ev{next(_event_ids):06d}", "event_time": int(time.time()),
            "authorizations": [{"team_id": TEAM, "user_id": BOT_USER, "is_bot": True}]}  # fmt: skip


def command_form(command: str, text: str, fake: FakeSlack, user: str = "UALICE", channel: str = CHANNEL) -> str:
    """A slash command as Slack POSTs it (form-encoded)."""
    trigger = f"trig-{next(_event_ids)}"
    return urllib.parse.urlencode({
        "command": command, "text": text, "user_id": user, "channel_id": channel, "team_id": TEAM, "token": "legacy",
        "response_url": f"{fake.base}/respond/{trigger}", "trigger_id": trigger, "api_app_id": "A1",
    })  # fmt: skip


def button_form(action_id: str, value: str, message: dict[str, Any], fake: FakeSlack, user: str = "UALICE") -> str:
    """A block_actions payload for a button under one of the bot's messages."""
    trigger = f"trig-{next(_event_ids)}"
    payload = {
        "type": "block_actions", "user": {"id": user}, "team": {"id": TEAM}, "channel": {"id": message["channel"]},
        "container": {"type": "message", "message_ts": message["ts"], "channel_id": message["channel"],
                      "thread_ts": message.get("thread_ts")},
        "message": message, "trigger_id": trigger, "api_app_id": "A1", "token": "legacy",
        "response_url": f"{fake.base}/respond/{trigger}",
        "actions": [{"action_id": action_id, "value": value, "block_id": "b", "type": "button", "action_ts": "1"}],
    }  # fmt: skip
    return urllib.parse.urlencode({"payload": json.dumps(payload)})


def signature(body: str, timestamp: str, secret: str = SECRET) -> str:
    """Slack's v0 request signature."""
    digest = hmac.new(secret.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return f"v0={digest}"


async def post_signed(session: aiohttp.ClientSession, url: str, body: str, *, form: bool = False, secret: str = SECRET,
                      timestamp: int | None = None, retry: int | None = None) -> aiohttp.ClientResponse:  # fmt: skip
    """POST a request signed the way Slack signs it."""
    stamp = str(timestamp if timestamp is not None else int(time.time()))
    headers = {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": signature(body, stamp, secret),
               "Content-Type": "application/x-www-form-urlencoded" if form else "application/json"}  # fmt: skip
    if retry is not None:
        headers.update({"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"})
    async with session.post(url, data=body.encode(), headers=headers) as response:
        await response.read()
        return response


@dataclass
class SlackSetup:
    fake: FakeSlack
    adapter: SlackAdapter
    url: str  # the adapter's /slack/events in HTTP mode
    session: aiohttp.ClientSession

    async def send(self, body: dict[str, Any] | str, *, form: bool = False, retry: int | None = None) -> int:
        """Deliver an event (HTTP: signed POST; socket: an envelope) and return the HTTP status (200 for socket)."""
        if self.adapter.settings.mode == "socket":
            payload = json.loads(body) if isinstance(body, str) else body
            await self.fake.push(payload, retry_attempt=retry or 0)
            return 200
        text = body if isinstance(body, str) else json.dumps(body)
        return (await post_signed(self.session, self.url, text, form=form, retry=retry)).status


@asynccontextmanager
async def connected_slack(bot: Bot, mode: str = "http", streaming: bool = False, **settings: Any) -> AsyncIterator[SlackSetup]:
    """The real adapter served against a fresh fake Slack."""
    fake = FakeSlack(streaming=streaming)
    await fake.start()
    port = free_port()
    section = SlackSection(enabled=True, mode=mode, host="127.0.0.1", port=port, api_base_url=fake.api_base_url,  # type: ignore[arg-type]
                           log_channel=LOG_CHANNEL, **settings)  # fmt: skip
    adapter = SlackAdapter(section, "xoxb-test", app_token="xapp-test", signing_secret=SECRET,
                           edit_interval=EDIT_INTERVAL, updates_per_minute=600)  # fmt: skip
    running = asyncio.create_task(adapter.run(bot))
    session = aiohttp.ClientSession()
    try:
        await asyncio.wait_for(adapter.ready.wait(), 10)
        if mode == "socket":
            await asyncio.wait_for(fake.connected.wait(), 10)
        yield SlackSetup(fake, adapter, f"http://127.0.0.1:{port}/slack/events", session)
    finally:
        await session.close()
        await adapter.stop()
        await asyncio.wait_for(asyncio.gather(running, return_exceptions=True), 10)
        await fake.stop()
