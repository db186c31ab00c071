"""Pure translation between Slack payloads and Atelier's types, and Markdown → Slack mrkdwn (no network)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from bot.messages import Author, ConversationKey, Message

PLATFORM = "slack"
# Slack accepts up to 40,000 characters but truncates display near 4,000; stay below that.
MESSAGE_LIMIT = 3900
# Message subtypes that are still a person talking; edits, joins, bot posts and the like are not.
_SPOKEN_SUBTYPES = {None, "file_share", "thread_broadcast"}
_USER_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
_LINK = re.compile(r"<((?:https?|mailto):[^|>]+)(?:\|([^>]*))?>")
_SUBCOMMANDS = ("reset", "persona", "status", "queue", "cancel", "forget-me", "help")


def unescape(text: str) -> str:
    """Slack escapes &, < and > in message text; undo that (after links and mentions are read)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def clean_text(text: str, bot_user_id: str) -> str:
    """The message text without the bot's mention, links as plain text, entities unescaped."""
    text = re.sub(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>", " ", text)
    text = _LINK.sub(lambda match: match.group(2) or match.group(1), text)
    return unescape(text).strip()


def mentioned_users(text: str, bot_user_id: str) -> list[str]:
    """User ids @-mentioned in a message, other than the bot."""
    return [user for user in _USER_MENTION.findall(text) if user != bot_user_id]


def is_dm(event: Mapping[str, Any]) -> bool:
    """Whether the event happened in a direct message with the bot."""
    return event.get("channel_type") == "im" or str(event.get("channel", "")).startswith("D")


def conversation_key(event: Mapping[str, Any], team: str) -> ConversationKey:
    """A thread is a conversation (a top-level mention starts one at its own ts); top-level DMs are one too."""
    channel = str(event.get("channel", ""))
    thread = event.get("thread_ts")
    if is_dm(event):
        return ConversationKey(PLATFORM, team, channel, str(thread or ""))
    return ConversationKey(PLATFORM, team, channel, str(thread or event.get("ts", "")))


def reply_thread(event: Mapping[str, Any]) -> str | None:
    """Where the answer goes: the event's thread, a new thread under a channel message, top level in a DM."""
    if event.get("thread_ts"):
        return str(event["thread_ts"])
    return None if is_dm(event) else str(event.get("ts", ""))


def is_from_a_person(event: Mapping[str, Any], bot_user_id: str) -> bool:
    """False for the bot itself, other bots, edits, deletions and join notices."""
    return (
        event.get("subtype") in _SPOKEN_SUBTYPES
        and not event.get("bot_id")
        and bool(event.get("user"))
        and event.get("user") != bot_user_id
    )


def mentions_bot(event: Mapping[str, Any], bot_user_id: str) -> bool:
    """Whether the text @-mentions the bot (such messages arrive again as app_mention)."""
    return f"<@{bot_user_id}" in str(event.get("text", ""))


def to_message(event: Mapping[str, Any], team: str, bot_user_id: str, author: Author, mention_names: tuple[str, ...]) -> Message:
    """The platform-neutral Message for a Slack message or app_mention event."""
    return Message(
        conversation=conversation_key(event, team),
        author=author,
        text=clean_text(str(event.get("text", "")), bot_user_id),
        id=str(event.get("client_msg_id") or event.get("ts", "")),
        mentions=mention_names,
        is_dm=is_dm(event),
        created_at=float(event.get("ts") or 0) or 0.0,
    )


def command_text(command: str, text: str) -> str | None:
    """The core's text command for a slash command; None when /atelier names no known subcommand."""
    text = text.strip()
    name = command.lstrip("/").lower()
    if name != "atelier":
        return f"/{name} {text}".strip()
    sub, _, rest = text.partition(" ")
    sub = sub.lower().lstrip("/")
    if sub not in _SUBCOMMANDS:
        return None
    return f"/{sub} {rest.strip()}".strip()


def author_from_profile(user_id: str, info: Mapping[str, Any] | None) -> Author:
    """An Author from users.info's `user` object (admins and owners may set personas in channels)."""
    if not info:
        return Author(user_id, user_id)
    profile = info.get("profile") or {}
    name = profile.get("display_name") or profile.get("real_name") or info.get("real_name") or info.get("name") or user_id
    is_admin = bool(info.get("is_admin") or info.get("is_owner") or info.get("is_primary_owner"))
    return Author(user_id, str(name), is_admin=is_admin, is_bot=bool(info.get("is_bot")))


# --- Markdown → mrkdwn ------------------------------------------------------------------------

_CODE = re.compile(r"(```.*?```|`[^`\n]+`)", re.DOTALL)
# Italic first: a single-asterisk span would otherwise also match the bold that Slack writes as *x*.
_INLINE_RULES = [
    (re.compile(r"(?<![*\w])\*(?!\s)([^*\n]+?)(?<!\s)\*(?![*\w])"), r"_\1_"),  # italic
    (re.compile(r"\*\*(.+?)\*\*"), r"*\1*"),  # bold
    (re.compile(r"__(.+?)__"), r"*\1*"),
    (re.compile(r"~~(.+?)~~"), r"~\1~"),
    # Links only to web or mail targets: <!channel|x> or <@U1|x> would ping people.
    (re.compile(r"!?\[([^\]]+)\]\(((?:https?://|mailto:)[^\s|>]+?)\)"), r"<\2|\1>"),
    (re.compile(r"^#{1,6}\s+(.+?)\s*#*$", re.MULTILINE), r"*\1*"),  # headings
    (re.compile(r"^(\s*)[-*+]\s+", re.MULTILINE), r"\1• "),  # bullets
]


def escape(text: str) -> str:
    """Escape &, < and > so Slack shows text literally (no mentions, no links, no @channel)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def markdown_to_mrkdwn(text: str) -> str:
    """Convert a model's Markdown to what Slack renders; code is left as it is (only escaped)."""
    parts = _CODE.split(text)
    out: list[str] = []
    for index, part in enumerate(parts):
        if index % 2:  # code: Slack shows it literally, but &, < and > must still be escaped
            out.append(escape(re.sub(r"^```[\w+-]*\n", "```\n", part)))
            continue
        converted = escape(part)
        for pattern, replacement in _INLINE_RULES:
            converted = pattern.sub(replacement, converted)
        out.append(converted)
    return "".join(out)
