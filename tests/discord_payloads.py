"""Discord-shaped payloads and the real discord.py objects built from them (no network)."""

from __future__ import annotations

from typing import Any

import discord

BOT_ID = 999
GUILD_ID = 100
CHANNEL_ID = 200
NSFW_CHANNEL_ID = 201
THREAD_ID = 300
DM_CHANNEL_ID = 400
ADMIN_ROLE = 150
STAMP = "2026-11-26T12:00:00+00:00"


def user(user_id: int, name: str, bot: bool = False) -> dict[str, Any]:
    """A user object."""
    return {"id": str(user_id), "username": name, "discriminator": "0", "avatar": None, "global_name": name.title(), "bot": bot}


# A second server whose id puts it on shard 1 of 2 (shard = (guild id >> 22) % shard count); the first is on shard 0.
SECOND_GUILD_ID = 1 << 22
SECOND_CHANNEL_ID = SECOND_GUILD_ID + 200


def guild_payload(guild_id: int = GUILD_ID, channel_id: int = CHANNEL_ID) -> dict[str, Any]:
    """A GUILD_CREATE payload: one text channel, one NSFW channel, one thread the bot opened (the first server's ids by default)."""
    if guild_id != GUILD_ID:
        return {**guild_payload(), "id": str(guild_id), "name": "Second Guild", "threads": [], "roles": [
            {**role, "id": str(guild_id) if role["id"] == str(GUILD_ID) else role["id"]} for role in guild_payload()["roles"]],
            "channels": [{"id": str(channel_id), "type": 0, "name": "general", "position": 0, "nsfw": False,
                          "guild_id": str(guild_id)}]}  # fmt: skip
    everyone = {"id": str(GUILD_ID), "name": "@everyone", "permissions": "0", "position": 0, "color": 0,
                "hoist": False, "managed": False, "mentionable": False}  # fmt: skip
    admin = {**everyone, "id": str(ADMIN_ROLE), "name": "admins", "permissions": str(1 << 5), "position": 1}
    thread = {"id": str(THREAD_ID), "type": 11, "name": "a chat", "parent_id": str(CHANNEL_ID), "guild_id": str(GUILD_ID),
              "owner_id": str(BOT_ID), "message_count": 0, "member_count": 1, "rate_limit_per_user": 0,
              "thread_metadata": {"archived": False, "auto_archive_duration": 60, "archive_timestamp": STAMP, "locked": False}}  # fmt: skip
    return {
        "id": str(GUILD_ID), "name": "Test Guild", "owner_id": "1", "features": [], "emojis": [], "members": [],
        "roles": [everyone, admin], "threads": [thread],
        "channels": [
            {"id": str(CHANNEL_ID), "type": 0, "name": "general", "position": 0, "nsfw": False, "guild_id": str(GUILD_ID)},
            {"id": str(NSFW_CHANNEL_ID), "type": 0, "name": "after-dark", "position": 1, "nsfw": True, "guild_id": str(GUILD_ID)},
        ],
    }  # fmt: skip


def message_payload(
    message_id: int,
    content: str,
    author: dict[str, Any],
    channel_id: int = CHANNEL_ID,
    *,
    guild: bool = True,
    mentions: list[dict[str, Any]] | None = None,
    reply_to: dict[str, Any] | None = None,
    roles: list[int] | None = None,
    guild_id: int = GUILD_ID,
) -> dict[str, Any]:
    """A MESSAGE_CREATE payload."""
    data: dict[str, Any] = {
        "id": str(message_id), "channel_id": str(channel_id), "author": author, "content": content,
        "timestamp": STAMP, "edited_timestamp": None, "tts": False, "mention_everyone": False,
        "mentions": mentions or [], "mention_roles": [], "attachments": [], "embeds": [], "pinned": False, "type": 0,
    }  # fmt: skip
    if guild:
        data["guild_id"] = str(guild_id)
        data["member"] = {"flags": 0, "roles": [str(r) for r in roles or []], "joined_at": STAMP, "deaf": False, "mute": False}
    if reply_to is not None:
        data["type"] = 19
        data["message_reference"] = {"message_id": reply_to["id"], "channel_id": reply_to["channel_id"]}
        data["referenced_message"] = reply_to
    return data


def interaction_payload(
    interaction_id: int,
    author: dict[str, Any],
    *,
    command: str | None = None,
    options: dict[str, Any] | None = None,
    button: str | None = None,
    message: dict[str, Any] | None = None,
    channel_id: int = CHANNEL_ID,
    guild: bool = True,
    roles: list[int] | None = None,
) -> dict[str, Any]:
    """An INTERACTION_CREATE payload: a slash command (type 2) or a button press on `message` (type 3)."""
    if command is not None:
        types = {bool: 5, int: 4, str: 3}
        data: dict[str, Any] = {"id": "7000", "name": command, "type": 1, "options": [
            {"name": key, "type": types[type(value)], "value": value} for key, value in (options or {}).items()]}  # fmt: skip
    else:
        data = {"custom_id": button, "component_type": 2}
    payload: dict[str, Any] = {
        "id": str(interaction_id), "application_id": "4242", "type": 2 if command is not None else 3, "data": data,
        "channel_id": str(channel_id), "channel": {"id": str(channel_id), "type": 0 if guild else 1},
        "token": f"token-{interaction_id}", "version": 1, "locale": "en-US", "entitlements": [],
        "app_permissions": "0", "authorizing_integration_owners": {}, "context": 0 if guild else 1,
        "attachment_size_limit": 10 * 1024 * 1024,
    }  # fmt: skip
    if guild:
        payload["guild_id"] = str(GUILD_ID)
        payload["member"] = {"user": author, "roles": [str(r) for r in roles or []], "joined_at": STAMP, "deaf": False,
                             "mute": False, "flags": 0, "permissions": str((1 << 5) if roles else 0)}  # fmt: skip
    else:
        payload["user"] = author
    if message is not None:
        payload["message"] = message
    return payload


class World:
    """A discord.py connection state holding the test guild and a DM channel."""

    def __init__(self) -> None:
        self.client = discord.Client(intents=discord.Intents.default())
        self.state = self.client._connection
        self.guild = discord.Guild(data=guild_payload(), state=self.state)  # type: ignore[arg-type]
        self.state._add_guild(self.guild)
        me = discord.ClientUser(state=self.state, data=user(BOT_ID, "atelier", bot=True))  # type: ignore[arg-type]
        self.state.user = me
        self.dm = discord.DMChannel(me=me, state=self.state, data={"id": str(DM_CHANNEL_ID), "type": 1, "recipients": [user(5, "alice")]})  # type: ignore[arg-type]

    def message(self, data: dict[str, Any]) -> discord.Message:
        """The discord.Message the gateway event would become."""
        channel_id = int(data["channel_id"])
        channel: Any = self.dm if channel_id == DM_CHANNEL_ID else self.guild.get_channel_or_thread(channel_id)
        return discord.Message(state=self.state, channel=channel, data=data)  # type: ignore[arg-type]
