"""The Discord adapter: a discord.py client that turns events into Messages and answers through DiscordReply."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import discord

from adapters.chunks import split_message
from adapters.discord_convert import MESSAGE_LIMIT, addressed_to_bot, chain_root, is_allowed, to_message
from bot.config import DiscordSection
from bot.enforcement import ModerationEvent, format_event
from bot.messages import Artifact

if TYPE_CHECKING:
    from bot.core import Bot

log = logging.getLogger(__name__)
# Discord allows about five edits per message per five seconds; once a second leaves room.
EDIT_INTERVAL_S = 1.0
PLACEHOLDER = "…"


class DiscordReply:
    """Answers one Discord message: replies in its channel, streams by editing, attaches files."""

    def __init__(
        self,
        channel: discord.abc.Messageable,
        reference: discord.Message | None,
        on_posted: Callable[[int], None] = lambda message_id: None,
        edit_interval: float = EDIT_INTERVAL_S,
    ) -> None:
        self.channel = channel
        self.reference = reference
        self.on_posted = on_posted
        self.edit_interval = edit_interval
        self.last: discord.Message | None = None
        self._progress: discord.Message | None = None

    async def _post(self, text: str = "", **extra: object) -> discord.Message:
        # Only the first message of an answer is a reply; follow-ups just continue below it.
        reference = self.reference if self.last is None else None
        mentions = discord.AllowedMentions(everyone=False, roles=False, users=False, replied_user=False)
        message = await self.channel.send(text or None, reference=reference, allowed_mentions=mentions, **extra)  # type: ignore[call-overload]
        self.last = message
        self.on_posted(message.id)
        return message

    async def send(self, text: str) -> None:
        """Post text, split into messages of at most 2,000 characters."""
        for piece in split_message(text, MESSAGE_LIMIT):
            await self._post(piece)

    async def stream(self, chunks: AsyncIterator[str]) -> str:
        """Post a placeholder at once, edit it as text arrives (at most once per interval), then finish."""
        async with self.channel.typing():
            message = await self._post(PLACEHOLDER)
        loop = asyncio.get_running_loop()
        text, shown, last_edit = "", PLACEHOLDER, loop.time()
        async for chunk in chunks:
            text += chunk
            if loop.time() - last_edit >= self.edit_interval and len(text) <= MESSAGE_LIMIT and text.strip():
                shown = text
                await message.edit(content=shown)
                last_edit = loop.time()
        pieces = split_message(text, MESSAGE_LIMIT) or [PLACEHOLDER]
        if pieces[0] != shown:
            wait = self.edit_interval - (loop.time() - last_edit)
            if wait > 0:
                await asyncio.sleep(wait)  # keep the cadence for the final edit too
            await message.edit(content=pieces[0])
        for piece in pieces[1:]:
            await self._post(piece)
        return text

    async def edit(self, text: str) -> None:
        """Replace the last message posted (e.g. a withdrawn answer)."""
        if self.last is None:
            await self.send(text)
        else:
            await self.last.edit(content=split_message(text, MESSAGE_LIMIT)[0])

    async def attach(self, artifact: Artifact, caption: str = "") -> None:
        """Post a generated file, or say why it cannot be uploaded here."""
        guild = getattr(self.channel, "guild", None)
        limit = guild.filesize_limit if guild is not None else 10 * 1024 * 1024
        if len(artifact.data) > limit:
            await self._post(
                f"{artifact.filename} is {len(artifact.data) / 1e6:.1f} MB, over this server's {limit / 1e6:.0f} MB upload "
                "limit; try a smaller size or a shorter duration."
            )
            return
        file = discord.File(io.BytesIO(artifact.data), filename=artifact.filename)
        await self._post(caption[:MESSAGE_LIMIT], file=file)

    async def progress(self, fraction: float, note: str = "") -> None:
        """Show progress by editing one status message."""
        text = f"{round(fraction * 100)}%" + (f" · {note}" if note else "")
        if self._progress is None:
            self._progress = await self._post(text)
        else:
            await self._progress.edit(content=text)

    async def error(self, text: str) -> None:
        """Say what went wrong, in one message."""
        await self._post(split_message(text, MESSAGE_LIMIT)[0])


class DiscordAdapter:
    """Connects to Discord and serves messages addressed to the bot."""

    name = "discord"

    def __init__(self, settings: DiscordSection, token: str, edit_interval: float = EDIT_INTERVAL_S) -> None:
        self.settings = settings
        self._token = token
        self.edit_interval = edit_interval
        intents = discord.Intents.default()
        intents.message_content = True  # the bot reads what it is asked
        self.client = discord.Client(intents=intents)
        self.roots: dict[int, int] = {}  # message id → first message of its reply chain
        self.bot_threads: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._bot: Bot | None = None
        self.ready = asyncio.Event()
        self.client.event(self.on_message)
        self.client.event(self.on_ready)

    async def run(self, bot: Bot) -> None:
        """Log in and serve until stopped."""
        self._bot = bot
        if self.settings.log_channel:
            bot.enforcement.listeners.append(self._log_event)
        await bot.start_jobs()
        await self.client.start(self._token)

    async def _log_event(self, event: ModerationEvent) -> None:
        """Post a refusal from this platform to the admins' log channel."""
        if event.message.platform != self.name or not self.settings.log_channel:
            return
        channel = self.client.get_channel(int(self.settings.log_channel))
        if not isinstance(channel, discord.abc.Messageable):
            log.warning("the moderation log channel %s is not a text channel the bot can see", self.settings.log_channel)
            return
        await channel.send(format_event(event)[:MESSAGE_LIMIT], allowed_mentions=discord.AllowedMentions.none())

    async def stop(self) -> None:
        """Let in-flight answers finish, then disconnect."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.client.close()

    async def on_ready(self) -> None:
        """Gateway READY (and after a reconnect): the bot can answer."""
        log.info("connected to Discord as %s", self.client.user)
        self.ready.set()

    async def on_message(self, message: discord.Message) -> None:
        """Gateway MESSAGE_CREATE: answer it when it is addressed to the bot and allowed here."""
        me = self.client.user
        if me is None or self._bot is None or not addressed_to_bot(message, me.id, self.bot_threads):
            return
        if not is_allowed(message, self.settings.allow, self.settings.deny):
            return
        root = chain_root(message, self.roots)
        self.roots[message.id] = root

        def remember(posted: int) -> None:
            self.roots[posted] = root

        reply = DiscordReply(message.channel, message, remember, self.edit_interval)
        task = asyncio.create_task(self._bot.handle(to_message(message, me.id, root), reply), name=f"discord-{message.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
