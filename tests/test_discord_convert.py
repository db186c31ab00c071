"""Discord payloads → Atelier messages: who is addressed, which conversation, who may use the bot."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import discord
import pytest

from adapters.discord_convert import (
    addressed_to_bot,
    chain_root,
    interaction_message,
    is_allowed,
    to_message,
)
from bot.config import AccessList
from tests.discord_payloads import (
    ADMIN_ROLE,
    BOT_ID,
    CHANNEL_ID,
    DM_CHANNEL_ID,
    GUILD_ID,
    NSFW_CHANNEL_ID,
    THREAD_ID,
    World,
    interaction_payload,
    message_payload,
    user,
)  # fmt: skip

ALICE = user(5, "alice")
BOB = user(7, "bob")
ATELIER = user(BOT_ID, "atelier", bot=True)
OTHER_BOT = user(8, "otherbot", bot=True)


@pytest.fixture
def world() -> World:
    return World()


@pytest.mark.parametrize(
    ("payload", "answer"),
    [
        (message_payload(1, f"<@{BOT_ID}> hi", ALICE, mentions=[ATELIER]), True),
        (message_payload(1, "hi everyone", ALICE), False),
        (message_payload(1, "hi", ALICE, DM_CHANNEL_ID, guild=False), True),
        (message_payload(1, "thanks!", ALICE, reply_to=message_payload(2, "an answer", ATELIER)), True),
        (message_payload(1, "thanks!", ALICE, reply_to=message_payload(2, "a message", BOB)), False),
        (message_payload(1, "no mention needed here", ALICE, THREAD_ID), True),
        (message_payload(1, f"<@{BOT_ID}> hi", ATELIER, mentions=[ATELIER]), False),
        (message_payload(1, f"<@{BOT_ID}> hi", OTHER_BOT, mentions=[ATELIER]), False),
    ],
    ids=["mention", "no-mention", "dm", "reply-to-bot", "reply-to-someone-else", "bot-thread", "itself", "other-bot"],
)
def test_who_the_bot_answers(world: World, payload: dict, answer: bool) -> None:
    assert addressed_to_bot(world.message(payload), BOT_ID, {THREAD_ID}) is answer


async def nothing(message_id: int) -> None:
    """A fetch that finds no message (as if it were deleted)."""


def known(roots: dict[int, int]) -> Callable[[int], Awaitable[int | None]]:
    """Chain roots known without asking Discord (as the adapter's memory and the store answer)."""

    async def lookup(message_id: int) -> int | None:
        return roots.get(message_id)

    return lookup


async def test_a_mention_becomes_a_message_in_a_new_reply_chain(world: World) -> None:
    payload = message_payload(41, f"<@{BOT_ID}> draw <@7> as a knight", ALICE, mentions=[ATELIER, BOB])
    message = to_message(world.message(payload), BOT_ID, await chain_root(world.message(payload), known({}), nothing))
    assert message.text == "draw <@7> as a knight"
    assert str(message.conversation) == f"discord:{GUILD_ID}:{CHANNEL_ID}:chain:41"
    assert message.mentions == ("Bob",) and message.author.name == "Alice" and not message.author.is_admin
    assert message.conversation.scope == f"discord:{GUILD_ID}" and not message.is_dm and not message.nsfw


async def test_a_reply_to_the_bot_continues_the_chain(world: World) -> None:
    bot_answer = message_payload(50, "an answer", ATELIER)
    reply = world.message(message_payload(51, "and then?", ALICE, reply_to=bot_answer))
    root = await chain_root(reply, known({50: 41}), nothing)
    assert root == 41
    assert to_message(reply, BOT_ID, root).conversation.thread == "chain:41"
    assert await chain_root(reply, known({}), nothing) == 50  # unknown and gone: the chain starts at what it answers


def test_threads_dms_and_nsfw_channels(world: World) -> None:
    in_thread = to_message(world.message(message_payload(60, "hi", ALICE, THREAD_ID)), BOT_ID, 60)
    assert (in_thread.conversation.channel, in_thread.conversation.thread) == (str(CHANNEL_ID), f"thread:{THREAD_ID}")
    dm = to_message(world.message(message_payload(61, "hi", ALICE, DM_CHANNEL_ID, guild=False)), BOT_ID, 61)
    assert dm.is_dm and dm.conversation.scope == f"discord:dm:{DM_CHANNEL_ID}"
    assert to_message(world.message(message_payload(62, "hi", ALICE, NSFW_CHANNEL_ID)), BOT_ID, 62).nsfw


def test_admins_are_recognised_by_their_role_permissions(world: World) -> None:
    payload = message_payload(70, "hi", ALICE, roles=[ADMIN_ROLE])
    assert to_message(world.message(payload), BOT_ID, 70).author.is_admin


@pytest.mark.parametrize(
    ("allow", "deny", "allowed"),
    [
        (AccessList(), AccessList(), True),
        (AccessList(channels=[str(CHANNEL_ID)]), AccessList(), True),
        (AccessList(channels=["12345"]), AccessList(), False),
        (AccessList(roles=[str(ADMIN_ROLE)]), AccessList(), True),
        (AccessList(), AccessList(users=["5"]), False),
        (AccessList(channels=[str(CHANNEL_ID)]), AccessList(roles=[str(ADMIN_ROLE)]), False),  # deny wins
    ],
)
def test_allow_and_deny_lists(world: World, allow: AccessList, deny: AccessList, allowed: bool) -> None:
    message = world.message(message_payload(80, "hi", ALICE, THREAD_ID, roles=[ADMIN_ROLE]))
    assert is_allowed(message.channel, message.author, allow, deny) is allowed


@pytest.mark.parametrize(
    ("payload", "root", "key"),
    [
        (interaction_payload(1, ALICE, command="chat"), 1, "discord:100:200:chain:1"),
        (interaction_payload(1, ALICE, command="persona"), None, "discord:100:200:"),
        (interaction_payload(1, ALICE, command="chat", channel_id=DM_CHANNEL_ID, guild=False), 1, "discord::400:"),
        (interaction_payload(1, ALICE, command="reset", channel_id=THREAD_ID), None, "discord:100:200:thread:300"),
    ],
    ids=["chat-starts-a-chain", "channel-wide", "dm", "thread"],
)
def test_where_a_slash_command_belongs(world: World, payload: dict, root: int | None, key: str) -> None:
    interaction = discord.Interaction(data=payload, state=world.state)  # type: ignore[arg-type]
    message = interaction_message(interaction, "/reset", root)
    assert str(message.conversation) == key
    assert message.author.name == "Alice" and message.is_dm == (key.startswith("discord::"))
