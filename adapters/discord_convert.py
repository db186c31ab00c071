"""Translation between discord.py objects and Atelier's types (the network only through a given fetch)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Container
from typing import Any

import discord

from bot.config import AccessList
from bot.messages import Attachment, Author, ConversationKey, Message

PLATFORM = "discord"
MESSAGE_LIMIT = 2000
MAX_CHAIN_HOPS = 50  # how far back a reply chain is walked to find where it started
# A message of the same channel by id, or None when it is gone or hidden.
Fetch = Callable[[int], Awaitable["discord.Message | None"]]
# The root of a message's reply chain when it is known without asking Discord.
Known = Callable[[int], Awaitable["int | None"]]


def clean_content(content: str, bot_id: int) -> str:
    """The text with the bot's own mention removed (other members' mentions stay, for moderation)."""
    return re.sub(rf"<@!?{bot_id}>", " ", content).strip()


def is_admin(author: discord.User | discord.Member) -> bool:
    """Server admins (manage server or administrator) may change personas in shared channels."""
    permissions = getattr(author, "guild_permissions", None)
    return bool(permissions and (permissions.administrator or permissions.manage_guild))


def addressed_to_bot(message: discord.Message, bot_id: int, bot_threads: Container[int]) -> bool:
    """Whether the bot should answer: a DM, a mention, a reply to the bot, or a thread the bot opened."""
    if message.author.bot or message.author.id == bot_id:
        return False  # never itself, never other bots (two bots would talk forever)
    if message.guild is None:
        return True
    if any(user.id == bot_id for user in message.mentions):
        return True
    resolved = message.reference.resolved if message.reference is not None else None
    if isinstance(resolved, discord.Message) and resolved.author.id == bot_id:
        return True
    channel = message.channel
    # A thread the bot opened is its conversation: every message there is for it, even after a restart.
    return isinstance(channel, discord.Thread) and (channel.id in bot_threads or channel.owner_id == bot_id)


async def chain_root(message: discord.Message, known: Known, fetch: Fetch) -> int:
    """The first message of the reply chain this message belongs to (itself when it starts one).

    A message whose chain is known (seen by this process, or recorded in the store by any process)
    answers at once; otherwise the chain is walked back through Discord, so a reply to an old answer
    still continues its conversation.
    """
    reference = message.reference
    if reference is None or reference.message_id is None:
        return message.id
    current = reference.message_id
    resolved = reference.resolved if isinstance(reference.resolved, discord.Message) else None
    for _ in range(MAX_CHAIN_HOPS):
        root = await known(current)
        if root is not None:
            return root
        parent = resolved if resolved is not None and resolved.id == current else await fetch(current)
        resolved = None
        above = parent.reference.message_id if parent is not None and parent.reference is not None else None
        if above is None:
            return current
        current = above
    return current


def conversation_key(message: discord.Message, root: int) -> ConversationKey:
    """DM: the channel. Thread: the thread. Elsewhere: the reply chain that starts at `root`."""
    channel = message.channel
    if message.guild is None:
        return ConversationKey(PLATFORM, "", str(channel.id), "")
    guild = str(message.guild.id)
    if isinstance(channel, discord.Thread):
        return ConversationKey(PLATFORM, guild, str(channel.parent_id), f"thread:{channel.id}")
    return ConversationKey(PLATFORM, guild, str(channel.id), f"chain:{root}")


def is_allowed(channel: object, author: discord.abc.User, allow: AccessList, deny: AccessList) -> bool:
    """Apply the config's allow/deny lists to where and who (deny wins; a non-empty allow list must match)."""
    channels = {str(getattr(channel, "id", ""))}
    if isinstance(channel, discord.Thread) and channel.parent_id is not None:
        channels.add(str(channel.parent_id))
    roles = {str(role.id) for role in getattr(author, "roles", [])}
    user = {str(author.id)}
    if channels & set(deny.channels) or roles & set(deny.roles) or user & set(deny.users):
        return False
    if not (allow.channels or allow.roles or allow.users):
        return True
    return bool(channels & set(allow.channels) or roles & set(allow.roles) or user & set(allow.users))


def is_nsfw(channel: object) -> bool:
    """Whether Discord marks the channel (or a thread's parent) age-restricted."""
    if isinstance(channel, discord.Thread):
        channel = channel.parent
    return bool(getattr(channel, "nsfw", False))


def to_message(message: discord.Message, bot_id: int, root: int) -> Message:
    """The platform-neutral Message for a discord.py message."""
    author = message.author
    return Message(
        conversation=conversation_key(message, root),
        author=Author(str(author.id), author.display_name, is_admin=is_admin(author), is_bot=author.bot),
        text=clean_content(message.content, bot_id),
        id=str(message.id),
        mentions=tuple(user.display_name for user in message.mentions if user.id != bot_id),
        attachments=tuple(
            Attachment(a.filename, a.content_type or "application/octet-stream", a.url, a.size) for a in message.attachments
        ),
        reply_to=str(message.reference.message_id) if message.reference and message.reference.message_id else None,
        is_dm=message.guild is None,
        nsfw=is_nsfw(message.channel),
        created_at=message.created_at.timestamp(),
    )


def interaction_key(interaction: discord.Interaction[Any], root: int | None) -> ConversationKey:
    """The conversation of a slash command or button: DM, thread, the chain from `root`, or (None) the channel itself."""
    channel_id = str(interaction.channel_id or 0)
    if interaction.guild_id is None:
        return ConversationKey(PLATFORM, "", channel_id, "")
    guild = str(interaction.guild_id)
    channel = interaction.channel
    if isinstance(channel, discord.Thread):
        return ConversationKey(PLATFORM, guild, str(channel.parent_id), f"thread:{channel.id}")
    return ConversationKey(PLATFORM, guild, channel_id, f"chain:{root}" if root is not None else "")


def interaction_message(interaction: discord.Interaction[Any], text: str, root: int | None) -> Message:
    """The platform-neutral Message for a slash command (as its text form) or a button press."""
    author = interaction.user
    return Message(
        conversation=interaction_key(interaction, root),
        author=Author(str(author.id), author.display_name, is_admin=is_admin(author), is_bot=author.bot),
        text=text,
        id=str(interaction.id),
        is_dm=interaction.guild_id is None,
        nsfw=is_nsfw(interaction.channel),
        created_at=interaction.created_at.timestamp(),
    )
