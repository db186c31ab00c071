"""Slack payloads → Atelier messages, and Markdown → mrkdwn, as tables (no network)."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.slack_convert import (
    author_from_profile,
    clean_text,
    command_text,
    conversation_key,
    is_from_a_person,
    markdown_to_mrkdwn,
    reply_thread,
)
from tests.slack_harness import message_event

BOT = "UBOT"


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("**bold** and *italic*", "*bold* and _italic_"),
        ("~~gone~~", "~gone~"),
        ("[docs](https://example.com/a?b=1&c=2)", "<https://example.com/a?b=1&amp;c=2|docs>"),
        ("# Heading", "*Heading*"),
        ("- one\n* two", "• one\n• two"),
        ("1 < 2 & 3 > 2", "1 &lt; 2 &amp; 3 &gt; 2"),
        ("```python\nx = a**b  # *not italic*\n```", "```\nx = a**b  # *not italic*\n```"),
        ("use `a*b*c` here", "use `a*b*c` here"),
        ("[everyone](!channel) and [you](@U123)", "[everyone](!channel) and [you](@U123)"),
        ("<!here> <@U1>", "&lt;!here&gt; &lt;@U1&gt;"),
    ],
    ids=["bold-italic", "strike", "link", "heading", "bullets", "escapes", "code-block", "inline-code", "no-ping-links",
         "no-raw-pings"],
)
def test_markdown_becomes_mrkdwn(markdown: str, mrkdwn: str) -> None:
    assert markdown_to_mrkdwn(markdown) == mrkdwn


@pytest.mark.parametrize(
    ("event", "key", "thread"),
    [
        (message_event("10.1", "hi", mention=True), "slack:T1:C100:10.1", "10.1"),
        (message_event("10.2", "more", thread_ts="10.1"), "slack:T1:C100:10.1", "10.1"),
        (message_event("10.3", "hi", channel="D200"), "slack:T1:D200:", None),
        (message_event("10.4", "in a DM thread", channel="D200", thread_ts="10.3"), "slack:T1:D200:10.3", "10.3"),
    ],
    ids=["top-level-mention-starts-a-thread", "thread-reply", "dm-top-level", "dm-thread"],
)
def test_which_conversation_and_where_the_answer_goes(event: dict[str, Any], key: str, thread: str | None) -> None:
    assert str(conversation_key(event, "T1")) == key
    assert reply_thread(event) == thread


@pytest.mark.parametrize(
    ("event", "answer"),
    [
        (message_event("1", "hi"), True),
        (message_event("1", "hi", user=BOT), False),
        (message_event("1", "hi", bot_id="B9"), False),
        (message_event("1", "hi", subtype="message_changed"), False),
        (message_event("1", "hi", subtype="file_share"), True),
    ],
    ids=["person", "itself", "another-bot", "edit", "file-share"],
)
def test_only_people_are_answered(event: dict[str, Any], answer: bool) -> None:
    assert is_from_a_person(event, BOT) is answer


@pytest.mark.parametrize(
    ("command", "text", "expected"),
    [
        ("/imagine", "a red fox --seed 5", "/imagine a red fox --seed 5"),
        ("/compose", "", "/compose"),
        ("/atelier", "persona You are a pirate", "/persona You are a pirate"),
        ("/atelier", "FORGET-ME", "/forget-me"),
        ("/atelier", "dance", None),
    ],
)
def test_slash_commands_become_text_commands(command: str, text: str, expected: str | None) -> None:
    assert command_text(command, text) == expected


def test_text_is_cleaned_of_the_bot_mention_links_and_entities() -> None:
    text = f"<@{BOT}> summarise <https://example.com|this page> &amp; compare with <@U2>"
    assert clean_text(text, BOT) == "summarise this page & compare with <@U2>"


def test_admins_and_owners_are_admins() -> None:
    assert author_from_profile("U1", {"is_owner": True, "profile": {"display_name": "Ola"}}).is_admin
    plain = author_from_profile("U2", {"profile": {"display_name": "", "real_name": "Per"}})
    assert plain.name == "Per" and not plain.is_admin
    assert author_from_profile("U3", None).name == "U3"
