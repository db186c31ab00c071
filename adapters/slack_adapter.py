"""The Slack adapter: a slack-bolt AsyncApp (Socket Mode or HTTP) that turns events into Messages."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from aiohttp import web
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from adapters.base import finish_in_flight
from adapters.connect import keep_trying, network_fault
from adapters.slack_convert import (
    MESSAGE_LIMIT,
    PLATFORM,
    author_from_profile,
    command_text,
    conversation_key,
    escape,
    is_dm,
    is_from_a_person,
    mentioned_users,
    mentions_bot,
    reply_thread,
    to_message,
)
from adapters.slack_reply import (
    EDIT_INTERVAL_S,
    UPDATES_PER_MINUTE,
    PrivateReply,
    SlackReply,
    WorkspacePacer,
    api_error,
)
from bot.config import SlackSection
from bot.enforcement import ModerationEvent, format_event
from bot.errors import BotError, ConfigError
from bot.messages import Author, ConversationKey, Message

if TYPE_CHECKING:
    from adapters.base import Reply
    from bot.core import Bot
    from bot.jobs import Job

log = logging.getLogger(__name__)
SEEN_EVENTS = 10_000  # event ids remembered, so Slack's retries are answered once
USER_CACHE_S = 600
LISTEN_BACKLOG = 1024
BUTTONS = re.compile(r"^atelier_(reroll|cancel|vary_[1-4])$")


def slack_fault(error: BaseException) -> str | None:
    """A fault of the network or of Slack's servers (retried), or None for a refusal (a bad token: not retried)."""
    if isinstance(error, SlackApiError) and error.response.status_code >= 500:
        return f"Slack answered HTTP {error.response.status_code}"
    return network_fault(error)


@web.middleware
async def refuse_bad_timestamps(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """A request whose signature timestamp is not a number is forged or broken: 401, as for a bad signature."""
    timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
    if not timestamp.isascii() or not timestamp.isdigit():
        return web.Response(status=401, text="invalid X-Slack-Request-Timestamp")
    return await handler(request)


class SlackAdapter:
    """Connects to Slack and serves mentions, DMs, threads, slash commands and buttons."""

    name = PLATFORM

    def __init__(
        self,
        settings: SlackSection,
        bot_token: str,
        app_token: str | None = None,
        signing_secret: str | None = None,
        edit_interval: float = EDIT_INTERVAL_S,
        updates_per_minute: float = UPDATES_PER_MINUTE,
    ) -> None:
        self.settings = settings
        self.edit_interval = edit_interval
        self._app_token = app_token
        base_url = settings.api_base_url or AsyncWebClient.BASE_URL
        # slack_sdk does not retry 429s on its own; Retry-After is honoured by this handler.
        retries = [AsyncRateLimitErrorRetryHandler(max_retry_count=5), AsyncConnectionErrorRetryHandler()]
        self.client = AsyncWebClient(token=bot_token, base_url=base_url.rstrip("/") + "/", retry_handlers=retries)
        self.app = AsyncApp(
            client=self.client,
            signing_secret=signing_secret or "",
            # Socket Mode requests arrive over the app-token websocket; only HTTP needs signatures checked.
            request_verification_enabled=settings.mode == "http",
        )
        self.pacer = WorkspacePacer(updates_per_minute)
        self.bot_user_id = ""
        self.team = ""
        self.ready = asyncio.Event()
        self.threads: set[ConversationKey] = set()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._users: dict[str, tuple[Author, float]] = {}
        self._lookups: dict[str, asyncio.Future[Author]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._bot: Bot | None = None
        self._stopped = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._socket: AsyncSocketModeHandler | None = None
        self.port = settings.port
        self._register()

    def _register(self) -> None:
        self.app.middleware(self._dedupe)
        self.app.event("app_mention")(self._on_mention)
        self.app.event("message")(self._on_message)
        for name in ("/imagine", "/compose"):
            self.app.command(name)(self._on_generate)
        self.app.command("/atelier")(self._on_atelier)
        self.app.action(BUTTONS)(self._on_button)
        self.app.error(self._on_error)

    # --- lifecycle -----------------------------------------------------------------------

    async def run(self, bot: Bot) -> None:
        """Check the token, resume stored jobs, then serve (Socket Mode or HTTP) until stopped."""
        self._bot = bot
        bot.attach(PLATFORM, self.reply_for_job)
        if self.settings.log_channel:
            bot.enforcement.listeners.append(self._log_event)
        try:
            identity = await keep_trying(self.client.auth_test, "Slack", "the network, or adapters.slack.api_base_url", slack_fault)
        except SlackApiError as error:
            raise ConfigError(
                f"Slack refused the bot token in {self.settings.bot_token_env} ({api_error(error)}); copy the "
                "Bot User OAuth Token (xoxb-…) again from the app's OAuth & Permissions page."
            ) from None
        self.bot_user_id, self.team = str(identity["user_id"]), str(identity["team_id"])
        await bot.start_jobs()
        if self.settings.mode == "socket":
            self._socket = AsyncSocketModeHandler(self.app, self._app_token)
            await keep_trying(self._socket.connect_async, "Slack Socket Mode", "the network", slack_fault)
        else:
            web_app = self.app.web_app(path=self.settings.path, port=self.settings.port)
            web_app.middlewares.append(refuse_bad_timestamps)
            self._runner = web.AppRunner(web_app, access_log=None)
            await self._runner.setup()
            # aiohttp's default backlog (128) drops connections in a burst of events, and Slack's retry costs seconds.
            site = web.TCPSite(self._runner, self.settings.host, self.settings.port, backlog=LISTEN_BACKLOG)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        log.info("connected to Slack workspace %s as %s (%s mode)", self.team, self.bot_user_id, self.settings.mode)
        self.ready.set()
        await self._stopped.wait()

    async def stop(self) -> None:
        """Stop taking events, let in-flight answers finish, then disconnect."""
        if self._socket is not None:
            await self._socket.close_async()
        if self._runner is not None:
            await self._runner.cleanup()
        await finish_in_flight(self._tasks)
        self._stopped.set()

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- middleware ----------------------------------------------------------------------

    async def _dedupe(self, body: dict[str, Any], next: Callable[[], Awaitable[None]]) -> BoltResponse | None:  # noqa: A002 - Bolt passes it by this name
        """Slack retries events it thinks failed; an event already answered (or being answered) is acknowledged and dropped.

        The store remembers answered ids across restarts (and processes); the in-memory set covers the seconds
        before the first answer is stored.
        """
        event_id = body.get("event_id")
        if event_id:
            if event_id in self._seen:
                return BoltResponse(status=200, body="")
            if self._bot is not None:
                try:
                    fresh = await self._bot.store.claim_event(PLATFORM, str(event_id))
                except BotError:
                    fresh = True  # a store that cannot be written must not cost the user their answer
                if not fresh:
                    return BoltResponse(status=200, body="")
            self._seen[event_id] = None
            if len(self._seen) > SEEN_EVENTS:
                self._seen.popitem(last=False)
        await next()
        return None

    async def _on_error(self, error: Exception, body: dict[str, Any]) -> None:
        log.error("Slack handler failed: %s", error.__class__.__name__, exc_info=error)

    # --- events --------------------------------------------------------------------------

    async def _on_mention(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        """app_mention: answer in the thread (a top-level mention starts one)."""
        if is_from_a_person(event, self.bot_user_id):
            team = str(body.get("team_id") or self.team)
            self.threads.add(conversation_key(event, team))
            await self._serve(event, team, body.get("event_id"))

    async def _on_message(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        """message.im and thread replies: DMs always; a thread when the bot is already part of it."""
        if not is_from_a_person(event, self.bot_user_id) or self._bot is None:
            return
        team = str(body.get("team_id") or self.team)
        if is_dm(event):
            await self._serve(event, team, body.get("event_id"))
            return
        if not event.get("thread_ts") or mentions_bot(event, self.bot_user_id):
            return  # top-level chatter is not for the bot; a mention arrives again as app_mention
        key = conversation_key(event, team)
        if key in self.threads or await self._bot.store.has_conversation(key):
            self.threads.add(key)
            await self._serve(event, team, body.get("event_id"))

    async def _serve(self, event: dict[str, Any], team: str, event_id: str | None) -> None:
        if self._bot is None:
            return
        text = str(event.get("text", ""))
        author = await self.author(str(event["user"]))
        names = tuple([(await self.author(user)).name for user in mentioned_users(text, self.bot_user_id)])
        message = to_message(event, team, self.bot_user_id, author, names)
        reply = SlackReply(self.client, str(event["channel"]), reply_thread(event), self.pacer, (team, author.id), self.edit_interval)
        self._spawn(self._answer(message, reply, event_id), f"slack-{event.get('ts')}")

    async def _answer(self, message: Message, reply: SlackReply, event_id: str | None) -> None:
        assert self._bot is not None
        await self._bot.handle(message, reply)
        if event_id:
            with contextlib.suppress(BotError):  # unrecorded, a later retry is answered again: better than never
                await self._bot.store.mark_answered(PLATFORM, event_id)

    async def author(self, user_id: str) -> Author:
        """Who a user is (name, admin), from users.info, cached for ten minutes; one lookup per user at a time."""
        cached = self._users.get(user_id)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        pending = self._lookups.get(user_id)
        if pending is None:
            pending = self._lookups[user_id] = asyncio.ensure_future(self._look_up(user_id))
            pending.add_done_callback(lambda _: self._lookups.pop(user_id, None))
        return await asyncio.shield(pending)

    async def _look_up(self, user_id: str) -> Author:
        try:
            info = (await self.client.users_info(user=user_id)).get("user")
        except SlackApiError as error:
            log.warning("users.info failed for a user (%s)", api_error(error))
            info = None
        author = author_from_profile(user_id, info)
        self._users[user_id] = (author, time.monotonic() + USER_CACHE_S)
        return author

    # --- slash commands and buttons ------------------------------------------------------

    def _private(self, respond: Any) -> Callable[[str], Awaitable[None]]:
        async def private(text: str) -> None:
            await respond(text=text, response_type="ephemeral", replace_original=False)

        return private

    async def _on_generate(self, ack: Any, command: dict[str, Any], respond: Any) -> None:
        """/imagine and /compose: acknowledged at once; the job lives in a thread under a short request message."""
        text = command_text(command["command"], command.get("text", "")) or ""
        if not command.get("text", "").strip():
            example = "a red fox in the snow --seed 5" if command["command"] == "/imagine" else "calm piano --duration 10"
            await ack(text=f"Describe what you want, e.g. {command['command']} {example}")
            return
        await ack(text="Working on it; follow the thread below.")
        if self._bot is None:
            return
        channel, user = str(command["channel_id"]), str(command["user_id"])
        try:
            # The prompt itself is not repeated here: it has not passed moderation yet.
            root = await self.client.chat_postMessage(channel=channel, text=f"<@{user}> used {command['command']}")
        except SlackApiError as error:
            await respond(
                text=f"I can't post in this channel ({api_error(error)}); invite me with /invite, or DM me.",
                response_type="ephemeral",
            )
            return
        thread = str(root["ts"])
        team = str(command.get("team_id") or self.team)
        message = Message(
            conversation=ConversationKey(PLATFORM, team, channel, thread),
            author=await self.author(user), text=text, id=str(command.get("trigger_id", "")), is_dm=channel.startswith("D"),
        )  # fmt: skip
        self.threads.add(message.conversation)
        reply = SlackReply(self.client, channel, thread, self.pacer, (team, user), self.edit_interval)
        self._spawn(self._bot.handle(message, reply), f"slack-command-{thread}")

    async def _on_atelier(self, ack: Any, command: dict[str, Any], respond: Any) -> None:
        """/atelier <reset|persona|status|queue|cancel|forget-me|help>: answered only to the person asking."""
        text = command_text("/atelier", command.get("text", ""))
        if text is None:
            await ack(text="Usage: /atelier reset | persona <text> | status | queue | cancel [job-id] | forget-me | help")
            return
        channel = str(command["channel_id"])
        if text == "/reset" and not channel.startswith("D"):
            await ack(text="Each thread is its own conversation: mention me in a new message to start fresh. /atelier reset clears a DM.")
            return
        await ack()
        if self._bot is None:
            return
        team = str(command.get("team_id") or self.team)
        message = Message(
            conversation=ConversationKey(PLATFORM, team, channel, ""), author=await self.author(str(command["user_id"])),
            text=text, id=str(command.get("trigger_id", "")), is_dm=channel.startswith("D"),
        )  # fmt: skip
        self._spawn(self._bot.handle(message, PrivateReply(self._private(respond))), f"slack-atelier-{message.id}")

    async def _on_button(self, ack: Any, body: dict[str, Any], action: dict[str, Any], respond: Any) -> None:
        """Re-roll, Variations or Cancel: acknowledged at once; a new job answers in the same thread."""
        await ack()
        if self._bot is None:
            return
        verb = str(action["action_id"]).removeprefix("atelier_")
        job_id, _, picture = str(action.get("value", "")).partition(":")
        text = f"/{verb.split('_')[0]} {job_id}" + (f" {picture}" if picture else "")
        channel = str((body.get("channel") or {}).get("id", ""))
        container = body.get("container") or {}
        thread = str(container.get("thread_ts") or (body.get("message") or {}).get("thread_ts") or "")
        if not thread and not channel.startswith("D"):
            thread = str(container.get("message_ts") or "")  # a channel message is answered in its thread
        team = str((body.get("team") or {}).get("id") or self.team)
        user = str((body.get("user") or {}).get("id", ""))
        message = Message(
            conversation=ConversationKey(PLATFORM, team, channel, thread), author=await self.author(user), text=text,
            id=str(body.get("trigger_id", "")), is_dm=channel.startswith("D"),
        )  # fmt: skip
        reply = SlackReply(self.client, channel, thread or None, self.pacer, (team, user), self.edit_interval, private=self._private(respond))
        self._spawn(self._bot.handle(message, reply), f"slack-button-{body.get('trigger_id')}")

    # --- jobs after a restart, and the moderation log ------------------------------------

    def reply_for_job(self, job: Job) -> Reply | None:
        """A reply into a stored job's thread, for a job resumed after a restart."""
        team, channel, thread = job.conversation.workspace, job.conversation.channel, job.conversation.thread
        return SlackReply(self.client, channel, thread or None, self.pacer, (team, job.user.split(":", 1)[-1]), self.edit_interval)

    async def _log_event(self, event: ModerationEvent) -> None:
        """Post a refusal from this platform to the admins' log channel."""
        if event.message.platform != self.name or not self.settings.log_channel:
            return
        text = escape(format_event(event))[:MESSAGE_LIMIT]  # the refused text quoted as is must not ping anyone
        await self.client.chat_postMessage(channel=self.settings.log_channel, text=text)
