"""The Discord adapter: a discord.py client that turns messages, slash commands and buttons into Messages."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import discord
import yarl
from discord.gateway import DiscordWebSocket

from adapters.base import finish_in_flight
from adapters.connect import keep_trying, network_fault
from adapters.discord_commands import build_tree, sync_commands
from adapters.discord_convert import (
    MESSAGE_LIMIT,
    PLATFORM,
    addressed_to_bot,
    chain_root,
    interaction_message,
    is_allowed,
    to_message,
)
from adapters.discord_reply import (
    EDIT_INTERVAL_S,
    DiscordReply,
    InteractionReply,
    JobButton,
)
from bot.config import DiscordSection, ShardsSection
from bot.enforcement import ModerationEvent, format_event
from bot.messages import ConversationKey

if TYPE_CHECKING:
    from adapters.base import Reply
    from bot.core import Bot
    from bot.jobs import Job

log = logging.getLogger(__name__)
THREAD_NAME_CHARS = 90
MAX_REMEMBERED_ROOTS = 100_000


async def _fetch(channel: discord.abc.Messageable, message_id: int) -> discord.Message | None:
    """A message of `channel`, or None when it was deleted or the bot may not read it."""
    try:
        return await channel.fetch_message(message_id)
    except discord.HTTPException:
        return None


class _Atelier:
    """What Atelier adds to a discord.py client: slash commands and job buttons, handed on to the adapter."""

    adapter: DiscordAdapter
    tree: discord.app_commands.CommandTree[Any]

    async def setup_hook(self) -> None:
        """After login, before the gateway: buttons survive restarts; commands are synced once."""
        self.add_dynamic_items(JobButton)  # type: ignore[attr-defined]
        await sync_commands(self.tree, self.adapter.settings.guilds)
        await self.adapter.on_login()

    async def on_job_button(self, interaction: discord.Interaction[Any], command: str) -> None:
        """A re-roll, variations or cancel button was pressed."""
        await self.adapter.answer_button(interaction, command)


class AtelierClient(_Atelier, discord.Client):
    """One gateway connection: every server the bot is in (Discord allows up to 2,500)."""

    def __init__(self, adapter: DiscordAdapter, intents: discord.Intents) -> None:
        super().__init__(intents=intents)
        self.adapter = adapter
        self.tree = build_tree(self, adapter.answer_command)


class AtelierShardedClient(_Atelier, discord.AutoShardedClient):
    """Several gateway connections (shards), each serving the servers Discord assigns it."""

    def __init__(self, adapter: DiscordAdapter, intents: discord.Intents, shards: ShardsSection) -> None:
        count = None if shards.count == "auto" else shards.count
        super().__init__(intents=intents, shard_count=count, shard_ids=shards.ids or None)
        self.adapter = adapter
        self.tree = build_tree(self, adapter.answer_command)


def point_at(api_base_url: str | None, gateway_url: str | None) -> None:
    """Send discord.py's REST and gateway traffic elsewhere (a proxy shared by processes, a test double)."""
    if api_base_url:
        discord.http.Route.BASE = api_base_url.rstrip("/")  # type: ignore[misc]
    if gateway_url:
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


def discord_fault(error: BaseException) -> str | None:
    """A fault of the network or of Discord's servers (retried), or None for a refusal (a bad token: not retried)."""
    if isinstance(error, discord.HTTPException) and error.status >= 500:
        return f"Discord answered HTTP {error.status}"
    if isinstance(error, discord.GatewayNotFound):
        return "Discord's gateway could not be found"
    return network_fault(error)


class DiscordAdapter:
    """Connects to Discord and serves messages, slash commands and buttons addressed to the bot."""

    name = PLATFORM

    def __init__(self, settings: DiscordSection, token: str, edit_interval: float = EDIT_INTERVAL_S) -> None:
        self.settings = settings
        self._token = token
        self.edit_interval = edit_interval
        intents = discord.Intents.default()
        intents.message_content = True  # the bot reads what it is asked
        point_at(settings.api_base_url, settings.gateway_url)
        self.client: discord.Client = (
            AtelierClient(self, intents) if settings.shards is None else AtelierShardedClient(self, intents, settings.shards)
        )
        self.roots: dict[int, int] = {}  # message id → first message of its reply chain
        self.bot_threads: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._bot: Bot | None = None
        self.ready = asyncio.Event()
        self.client.event(self.on_message)
        self.client.event(self.on_ready)

    async def run(self, bot: Bot) -> None:
        """Log in, resume stored jobs, and serve until stopped."""
        self._bot = bot
        bot.attach(PLATFORM, self.reply_for_job)
        shards = self.settings.shards
        if bot.store.engine.shared and (shards is None or not shards.ids):
            # Every process that connects all shards receives every message, and each would answer it.
            log.warning("Discord on a shared store without adapters.discord.shards.ids: if another bot process also "
                        "connects to Discord, give each its own shard ids, or every message is answered once per process")  # fmt: skip
        if self.settings.log_channel:
            bot.enforcement.listeners.append(self._log_event)
        # discord.py reconnects the gateway by itself; logging in over REST is ours to retry.
        await keep_trying(lambda: self.client.login(self._token), "Discord", "the network", discord_fault)
        await self.client.connect(reconnect=True)

    async def on_login(self) -> None:
        """Logged in (REST works, the gateway is not up yet): resume jobs a previous run left."""
        if self._bot is not None:
            await self._bot.start_jobs()

    async def stop(self) -> None:
        """Let in-flight answers finish, then disconnect."""
        await finish_in_flight(self._tasks)
        await self.client.close()

    async def on_ready(self) -> None:
        """Gateway READY (and after a reconnect): the bot can answer."""
        log.info("connected to Discord as %s", self.client.user)
        self.ready.set()

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _remember(self, root: int | None) -> Callable[[int], None]:
        """What a reply does with each message it posts: with a chain root, a reply to it continues that chain."""

        def remember(posted: int) -> None:
            if root is not None:
                self._note_root(posted, root)

        return remember

    def _note_root(self, message_id: int, root: int) -> None:
        """Remember a message's chain here (the newest ones) and in the store, for every process and after a restart."""
        self.roots[message_id] = root
        if len(self.roots) > MAX_REMEMBERED_ROOTS:
            for old in list(itertools.islice(self.roots, len(self.roots) - MAX_REMEMBERED_ROOTS // 2)):
                del self.roots[old]
        if self._bot is not None and message_id != root:  # a chain's first message is its own root: nothing to record
            self._spawn(self._record_root(message_id, root), name="discord-chain-record")

    async def _record_root(self, message_id: int, root: int) -> None:
        assert self._bot is not None
        try:
            await self._bot.store.note_chain(PLATFORM, str(message_id), str(root))
        except Exception as error:  # the chain can still be walked through Discord
            log.warning("could not record a reply chain (%s)", error)

    async def _known_root(self, message_id: int) -> int | None:
        """A message's chain root, from this process's memory or the store."""
        if message_id in self.roots:
            return self.roots[message_id]
        if self._bot is None:
            return None
        try:
            stored = await self._bot.store.chain_of(PLATFORM, str(message_id))
        except Exception:  # the store is down for a moment: ask Discord instead
            return None
        return int(stored) if stored is not None else None

    # --- messages ------------------------------------------------------------------------

    async def on_message(self, message: discord.Message) -> None:
        """Gateway MESSAGE_CREATE: answer it when it is addressed to the bot and allowed here."""
        me = self.client.user
        if me is None or self._bot is None or not addressed_to_bot(message, me.id, self.bot_threads):
            return
        if not is_allowed(message.channel, message.author, self.settings.allow, self.settings.deny):
            return
        root = await chain_root(message, self._known_root, functools.partial(_fetch, message.channel))
        self._note_root(message.id, root)
        incoming = to_message(message, me.id, root)
        reply = DiscordReply(message.channel, message, self._remember(root), self.edit_interval)
        if self._opens_thread(message, root):
            thread = await self._open_thread(message, incoming.author.name)
            if thread is not None:
                key = ConversationKey(PLATFORM, str(thread.guild.id), str(message.channel.id), f"thread:{thread.id}")
                incoming = dataclasses.replace(incoming, conversation=key)
                reply = DiscordReply(thread, None, self._remember(None), self.edit_interval)
        self._spawn(self._bot.handle(incoming, reply), f"discord-{message.id}")

    def _opens_thread(self, message: discord.Message, root: int) -> bool:
        """With auto_thread, a new conversation (a mention, not a reply) in a text channel gets its own thread."""
        return self.settings.auto_thread and message.guild is not None and root == message.id and isinstance(message.channel, discord.TextChannel)

    async def _open_thread(self, message: discord.Message, author: str) -> discord.Thread | None:
        # Not the message itself: the name is public and shown before moderation has judged the text.
        name = f"Atelier · {author}"[:THREAD_NAME_CHARS]
        try:
            thread = await message.create_thread(name=name, auto_archive_duration=1440)
        except discord.HTTPException as error:
            # Missing "Create Public Threads" permission: answer in the channel instead.
            log.warning("could not open a thread in %s (%s); answering in the channel", message.channel.id, error.status)
            return None
        self.bot_threads.add(thread.id)
        return thread

    # --- slash commands and buttons ------------------------------------------------------

    async def answer_command(self, interaction: discord.Interaction[Any], text: str, root: int | None, private: bool) -> None:
        """Acknowledge a slash command at once (Discord allows 3 s), then answer through follow-ups."""
        if self._bot is None or not is_allowed(interaction.channel, interaction.user, self.settings.allow, self.settings.deny):
            await interaction.response.send_message("I'm not enabled in this channel; ask an admin, or DM me.", ephemeral=True)
            return
        if text == "/reset" and interaction.guild_id is not None and not isinstance(interaction.channel, discord.Thread):
            await interaction.response.send_message(
                "Here every reply chain is its own conversation: mention me in a new message (not a reply) to start "
                "fresh. /reset clears a thread or a DM.",
                ephemeral=True,
            )
            return
        await interaction.response.defer(thinking=True, ephemeral=private)
        reply = InteractionReply(interaction, self._channel_of(interaction), self._remember(root), self.edit_interval, private=private)
        self._spawn(self._bot.handle(interaction_message(interaction, text, root), reply), f"discord-command-{interaction.id}")

    async def answer_button(self, interaction: discord.Interaction[Any], command: str) -> None:
        """A job button: acknowledged silently; a new job answers in the channel, a refusal only to the presser."""
        if self._bot is None or not is_allowed(interaction.channel, interaction.user, self.settings.allow, self.settings.deny):
            await interaction.response.send_message("I'm not enabled for you here; ask an admin.", ephemeral=True)
            return
        await interaction.response.defer()
        pressed = interaction.message
        root = None
        if pressed is not None and interaction.guild_id is not None and not isinstance(interaction.channel, discord.Thread):
            root = await self._known_root(pressed.id) or pressed.id
        reply = InteractionReply(interaction, self._channel_of(interaction), self._remember(root), self.edit_interval, private_errors=True)
        self._spawn(self._bot.handle(interaction_message(interaction, command, root), reply), f"discord-button-{interaction.id}")

    def _channel_of(self, interaction: discord.Interaction[Any]) -> discord.abc.Messageable:
        channel = interaction.channel
        if isinstance(channel, discord.abc.Messageable):
            return channel
        return self.client.get_partial_messageable(interaction.channel_id or 0)

    # --- jobs after a restart, and the moderation log ------------------------------------

    def reply_for_job(self, job: Job) -> Reply | None:
        """A reply into a stored job's conversation, for a job resumed after a restart."""
        channel, thread = job.conversation.channel, job.conversation.thread
        target = int(thread.removeprefix("thread:")) if thread.startswith("thread:") else int(channel)
        messageable = self.client.get_partial_messageable(target)
        reference = None
        if job.message_id and job.message_id.isdigit():
            # The request may have been a slash command (no message to point at): do not fail on that.
            reference = discord.MessageReference(message_id=int(job.message_id), channel_id=target, fail_if_not_exists=False)
        root = int(thread.removeprefix("chain:")) if thread.startswith("chain:") else None
        return DiscordReply(messageable, reference, self._remember(root), self.edit_interval)

    async def _log_event(self, event: ModerationEvent) -> None:
        """Post a refusal from this platform to the admins' log channel."""
        if event.message.platform != self.name or not self.settings.log_channel:
            return
        channel = self.client.get_channel(int(self.settings.log_channel))
        if not isinstance(channel, discord.abc.Messageable):
            log.warning("the moderation log channel %s is not a text channel the bot can see", self.settings.log_channel)
            return
        home = getattr(getattr(channel, "guild", None), "id", None)
        workspace = event.message.conversation.workspace
        if workspace and workspace != str(home):
            # Another server's users and words are not this server's admins' business; the store keeps them.
            return
        await channel.send(format_event(event)[:MESSAGE_LIMIT], allowed_mentions=discord.AllowedMentions.none())
