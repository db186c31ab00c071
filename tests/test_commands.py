"""Every command, its arguments, and its permissions, as a user would type them."""

from __future__ import annotations

import sqlite3

from adapters.memory import MemoryAdapter
from bot.config import Config
from tests.fakes import QueuedTextBackend


async def test_help_lists_every_command(chat: MemoryAdapter) -> None:
    [text] = await chat.say("/help")
    for name in ("/help", "/reset", "/persona", "/status", "/forget-me"):
        assert name in text


async def test_help_explains_one_command(chat: MemoryAdapter) -> None:
    assert await chat.say("/help persona") == [
        "/persona <description> | /persona default — set who I am in this conversation, or go back to the default"
    ]
    assert await chat.say("/help nope") == ["Unknown command /nope; type /help to see the commands."]


async def test_reset_starts_a_new_conversation(chat: MemoryAdapter, backend: QueuedTextBackend) -> None:
    await chat.say("remember the word banana")
    assert await chat.say("/reset") == ["Started a new conversation; I won't use the earlier messages here."]
    await chat.say("what was the word?")
    assert [t.text for t in backend.prompts[-1][1:]] == ["what was the word?"]


async def test_persona_changes_the_system_prompt_of_this_conversation_only(chat: MemoryAdapter, backend: QueuedTextBackend, config: Config) -> None:
    assert await chat.say("/persona You are a pirate", dm=True) == ['Persona set for this conversation: "You are a pirate"']
    await chat.say("hello", dm=True)
    assert backend.prompts[-1][0].text == "You are a pirate"
    await chat.say("hello", conversation="other")
    assert backend.prompts[-1][0].text == config.bot.persona


async def test_persona_survives_reset_and_can_go_back_to_default(chat: MemoryAdapter, backend: QueuedTextBackend, config: Config) -> None:
    await chat.say("/persona You are a pirate", dm=True)
    await chat.say("/reset", dm=True)
    await chat.say("ahoy", dm=True)
    assert backend.prompts[-1][0].text == "You are a pirate"
    assert await chat.say("/persona default", dm=True) == ["Back to the default persona in this conversation."]
    await chat.say("hi", dm=True)
    assert backend.prompts[-1][0].text == config.bot.persona


async def test_persona_without_text_says_what_it_is_and_how_to_set_it(chat: MemoryAdapter) -> None:
    [text] = await chat.say("/persona", dm=True)
    assert "default" in text and "/persona <description>" in text


async def test_persona_in_a_shared_channel_needs_an_admin(chat: MemoryAdapter, backend: QueuedTextBackend) -> None:
    [refusal] = await chat.say("/persona You are a cat")
    assert "Only server admins can use /persona" in refusal
    assert await chat.say("/persona You are a cat", user="boss", admin=True) == ['Persona set for this conversation: "You are a cat"']


async def test_persona_too_long_is_explained(chat: MemoryAdapter) -> None:
    [text] = await chat.say("/persona " + "x" * 2500, dm=True)
    assert text == "A persona can be at most 2,000 characters; shorten it."


async def test_status_shows_backends_and_moderation(chat: MemoryAdapter) -> None:
    [text] = await chat.say("/status")
    assert "text: queued" in text and "moderation:" in text and "up " in text


async def test_forget_me_deletes_the_users_rows_everywhere(chat: MemoryAdapter, config: Config) -> None:
    await chat.say("alice says the tomatoes are ripe", user="alice", conversation="c1")
    await chat.say("/persona You are alice's butler", user="alice", conversation="dm-alice", dm=True)
    await chat.say("alice again", user="alice", conversation="dm-alice", dm=True)
    await chat.say("bob's message", user="bob", conversation="c1")
    [answer] = await chat.say("/forget-me", user="alice", conversation="c2")
    assert answer.startswith("Done: deleted 4 message(s)")
    with sqlite3.connect(config.bot.db) as db:
        texts = [row[0] for row in db.execute("SELECT text FROM messages")]
        users = [row[0] for row in db.execute("SELECT id FROM users")]
        personas = [row[0] for row in db.execute("SELECT persona FROM conversations WHERE persona IS NOT NULL")]
    assert texts == ["bob's message", "echo: bob's message"]
    assert users == ["memory:bob"]
    assert personas == []


async def test_unknown_command_and_stray_arguments_are_explained(chat: MemoryAdapter) -> None:
    assert await chat.say("/dance") == ["Unknown command /dance; type /help to see the commands."]
    assert await chat.say("/reset now") == ["/reset takes no arguments; usage: /reset"]
    assert await chat.say("/status please") == ["/status takes no arguments; usage: /status"]


async def test_a_path_is_chat_not_a_command(chat: MemoryAdapter, backend: QueuedTextBackend) -> None:
    await chat.say("/usr/bin/python is missing")
    assert backend.prompts[-1][-1].text == "/usr/bin/python is missing"
