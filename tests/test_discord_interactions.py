"""Slash commands and job buttons through the fake Discord: deferred at once, then answered by follow-ups."""

from __future__ import annotations

import re

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.backends.procedural import ProceduralBackend
from bot.config import Config
from moderation import Moderator
from tests.conftest import make_config, media_bot
from tests.discord_harness import ALICE, Setup, connected, until
from tests.discord_payloads import (
    ADMIN_ROLE,
    CHANNEL_ID,
    GUILD_ID,
    interaction_payload,
    message_payload,
    user,
)
from tests.fake_discord import APPLICATION_ID, Call, FakeDiscord
from tests.fakes import GatedImageBackend, QueuedTextBackend

BOB = user(6, "bob")
COMMANDS = {"chat", "imagine", "compose", "reset", "persona", "status", "queue", "cancel", "forget-me", "help"}


@pytest.fixture
async def drawing(config: Config, backend: QueuedTextBackend, moderator: Moderator) -> AsyncIterator[Setup]:
    bot = await media_bot(config, backend, moderator, ProceduralBackend())
    async with connected(bot, backend) as setup:
        yield setup
    await bot.close()


def files(call: Call) -> list[str]:
    return list(call.body.get("files", []))


def custom_ids(message: dict[str, Any]) -> list[str]:
    return [button["custom_id"] for row in message.get("components", []) for button in row["components"]]


def message_with_file(fake: FakeDiscord, prompt_slug: str, seed: str = "seed") -> dict[str, Any]:
    """The message carrying a file named "<prompt slug>-<job id>-<seed>…" (results are named by prompt and job)."""
    name = re.compile(rf"{prompt_slug}-[0-9a-f]{{8}}-{seed}")
    return next(m for m in fake.messages.values() if any(name.match(a["filename"]) for a in m["attachments"]))


async def test_commands_are_synced_at_start_globally_or_to_the_configured_guilds(
    config: Config, backend: QueuedTextBackend, moderator: Moderator
) -> None:
    bot = await media_bot(config, backend, moderator, ProceduralBackend())
    async with connected(bot, backend) as setup:
        [synced] = [c for c in setup.fake.calls if c.method == "PUT" and c.path == f"/applications/{APPLICATION_ID}/commands"]
        assert {command["name"] for command in synced.body["json"]} == COMMANDS
        imagine = next(command for command in synced.body["json"] if command["name"] == "imagine")
        assert [option["name"] for option in imagine["options"]] == ["prompt", "seed", "size", "n", "negative", "steps", "guidance"]
    async with connected(bot, backend, guilds=[GUILD_ID]) as setup:
        paths = [c.path for c in setup.fake.calls if c.method == "PUT"]
        assert f"/applications/{APPLICATION_ID}/guilds/{GUILD_ID}/commands" in paths
    await bot.close()


async def test_slash_imagine_is_deferred_then_answered_with_a_png_and_buttons(drawing: Setup) -> None:
    fake = drawing.fake
    options = {"prompt": "a red fox in the snow", "seed": 5, "size": "256x256"}
    await fake.interact(interaction_payload(8001, ALICE, command="imagine", options=options))
    await until(lambda: any(files(c) for c in fake.followups("token-8001")), timeout=20)
    [deferral] = fake.callbacks
    assert deferral["type"] == 5  # "thinking…", sent before any work
    first_followup = fake.followups("token-8001")[0]
    assert first_followup.at > next(c.at for c in fake.calls if c.path.endswith("/callback"))
    assert first_followup.body["json"]["content"].startswith("Queued image job")
    result = message_with_file(fake, "a-red-fox-in-the-snow")
    job_id = custom_ids(result)[0].split(":")[2]
    assert custom_ids(result) == [f"atelier:reroll:{job_id}", f"atelier:vary:{job_id}:1"]
    status = next(m for m in fake.messages.values() if m["content"].startswith(("Queued", "Image job")))
    await until(lambda: custom_ids(status) == [])  # the cancel button goes once the job is done


async def test_the_reroll_button_makes_the_picture_again_with_a_new_seed(drawing: Setup) -> None:
    fake = drawing.fake
    await fake.interact(interaction_payload(8002, ALICE, command="imagine", options={"prompt": "a lighthouse", "seed": 7, "size": "256x256"}))
    await until(lambda: any(files(c) for c in fake.followups("token-8002")), timeout=20)
    result = message_with_file(fake, "a-lighthouse")
    reroll = custom_ids(result)[0]
    await fake.interact(interaction_payload(8003, ALICE, button=reroll, message=result))
    await until(lambda: any(files(c) for c in fake.followups("token-8003")), timeout=20)
    assert fake.callbacks[-1]["type"] == 6  # acknowledged silently; the new job answers below
    [new_file] = [f for c in fake.followups("token-8003") for f in files(c)]
    assert new_file.startswith("a-lighthouse-") and not new_file.endswith("-seed7.png")  # a new job, a new seed


async def test_variations_of_one_picture_keep_its_seed(drawing: Setup) -> None:
    fake = drawing.fake
    await fake.interact(interaction_payload(8004, ALICE, command="imagine", options={"prompt": "a teapot", "seed": 11, "size": "256x256", "n": 2}))
    await until(lambda: sum(len(files(c)) for c in fake.followups("token-8004")) == 2, timeout=20)
    second = message_with_file(fake, "a-teapot", "seed12")
    assert custom_ids(second)[-1].endswith(":2")
    await fake.interact(interaction_payload(8005, ALICE, button=custom_ids(second)[-1], message=second))
    await until(lambda: sum(len(files(c)) for c in fake.followups("token-8005")) == 2, timeout=20)
    names = [f for c in fake.followups("token-8005") for f in files(c)]
    assert all(re.fullmatch(r"a-teapot-[0-9a-f]{8}-seed12-v\d+\.png", name) for name in names)


async def test_only_the_requester_or_an_admin_may_press_the_buttons(drawing: Setup) -> None:
    fake = drawing.fake
    await fake.interact(interaction_payload(8006, ALICE, command="imagine", options={"prompt": "a boat", "seed": 3, "size": "256x256"}))
    await until(lambda: any(files(c) for c in fake.followups("token-8006")), timeout=20)
    result = message_with_file(fake, "a-boat")
    await fake.interact(interaction_payload(8007, BOB, button=custom_ids(result)[0], message=result))
    await until(lambda: len(fake.followups("token-8007")) == 1)
    [refusal] = fake.followups("token-8007")
    assert refusal.body["json"]["flags"] & 64  # only Bob sees it
    assert "someone else's" in refusal.body["json"]["content"]
    await asyncio.sleep(0.3)
    assert len(fake.followups("token-8007")) == 1  # no job for Bob
    await fake.interact(interaction_payload(8008, user(9, "admin"), button=custom_ids(result)[0], message=result, roles=[ADMIN_ROLE]))
    await until(lambda: any(files(c) for c in fake.followups("token-8008")), timeout=20)


async def running_job(fake: FakeDiscord, gated: GatedImageBackend, interaction_id: int) -> dict[str, Any]:
    """Alice's /imagine, started and held by the gated backend: its status message (with the Cancel button)."""
    await fake.interact(interaction_payload(interaction_id, ALICE, command="imagine", options={"prompt": "a slow sunset"}))
    await until(gated.started.is_set)
    await until(lambda: fake.followups(f"token-{interaction_id}"))
    return next(m for m in fake.messages.values() if custom_ids(m) and custom_ids(m)[0].startswith("atelier:cancel:"))


async def test_the_cancel_button_stops_a_running_job(tmp_path: Any, backend: QueuedTextBackend, moderator: Moderator) -> None:
    gated = GatedImageBackend()
    bot = await media_bot(make_config(tmp_path), backend, moderator, gated)
    async with connected(bot, backend) as setup:
        fake = setup.fake
        status = await running_job(fake, gated, 8009)
        await fake.interact(interaction_payload(8010, BOB, button=custom_ids(status)[0], message=status))
        await until(lambda: fake.followups("token-8010"))  # Bob may not cancel Alice's job
        assert "someone else's" in fake.followups("token-8010")[0].body["json"]["content"]
        await fake.interact(interaction_payload(8011, ALICE, button=custom_ids(status)[0], message=status))
        await until(lambda: any("Cancelled image job" in c.body.get("json", {}).get("content", "") for c in fake.followups("token-8009")))
        assert not any(files(c) for c in fake.calls)
    await bot.close()


async def test_a_job_outliving_its_interaction_token_is_finished_in_the_channel(
    tmp_path: Any, backend: QueuedTextBackend, moderator: Moderator
) -> None:
    """Discord refuses an interaction's webhook after 15 minutes; progress, the result and buttons still arrive."""
    gated = GatedImageBackend()
    bot = await media_bot(make_config(tmp_path), backend, moderator, gated)
    async with connected(bot, backend) as setup:
        fake = setup.fake
        status_id = int((await running_job(fake, gated, 8030))["id"])
        fake.expired_tokens.add("token-8030")
        try:
            await until(lambda: fake.edits(CHANNEL_ID, status_id), timeout=10)  # progress now edits it as a channel message
        finally:
            gated.release.set()
        await until(lambda: any(files(c) for c in fake.posts(CHANNEL_ID)), timeout=20)
        await until(lambda: custom_ids(fake.messages[status_id]) == [])  # its cancel button still goes
        [result] = [c for c in fake.posts(CHANNEL_ID) if files(c)]
        assert "-gated-" in files(result)[0] and custom_ids(result.body["json"])[0].startswith("atelier:reroll:")
    await bot.close()


async def test_slash_chat_streams_and_a_reply_continues_it(drawing: Setup) -> None:
    fake, backend = drawing.fake, drawing.backend
    backend.queue("A haiku about rain, falling soft.")
    backend.queue("Another, about snow.")
    await fake.interact(interaction_payload(8012, ALICE, command="chat", options={"prompt": "write me a haiku"}))
    await until(lambda: any(m["content"] == "A haiku about rain, falling soft." for m in fake.messages.values()))
    answer = next(m for m in fake.messages.values() if m["content"].startswith("A haiku"))
    assert fake.followups("token-8012")[0].body["json"]["content"] == "…"
    assert any(c.method == "PATCH" and c.path.startswith(f"/webhooks/{APPLICATION_ID}/token-8012/messages/") for c in fake.calls)
    await fake.dispatch("MESSAGE_CREATE", message_payload(8013, "one more please", ALICE, reply_to=answer))
    await until(lambda: len(backend.prompts) == 2)
    assert "write me a haiku" in str(backend.prompts[1])


async def test_a_refused_slash_imagine_is_answered_and_nothing_is_queued(drawing: Setup) -> None:
    fake = drawing.fake
    prompt = "a nude photo of Taylor Swift in the shower"
    await fake.interact(interaction_payload(8014, ALICE, command="imagine", options={"prompt": prompt}))
    await until(lambda: fake.followups("token-8014"))
    [answer] = fake.followups("token-8014")
    assert "real" in answer.body["json"]["content"].lower()
    await asyncio.sleep(0.3)
    assert not any(files(c) for c in fake.calls) and drawing.adapter.client.user is not None


async def test_personal_commands_answer_privately(drawing: Setup) -> None:
    fake = drawing.fake
    await fake.interact(interaction_payload(8015, ALICE, command="status"))
    await until(lambda: fake.followups("token-8015"))
    assert fake.callbacks[-1]["type"] == 5 and fake.callbacks[-1]["data"]["flags"] & 64
    assert "procedural" in fake.followups("token-8015")[0].body["json"]["content"]


async def test_a_file_over_the_upload_limit_gets_a_message_instead(drawing: Setup) -> None:
    fake = drawing.fake
    payload = interaction_payload(8016, ALICE, command="imagine", options={"prompt": "a big sky", "seed": 1, "size": "256x256"})
    payload["attachment_size_limit"] = 1000  # Discord tells each interaction what this place accepts
    await fake.interact(payload)
    await until(lambda: any("upload limit" in c.body.get("json", {}).get("content", "") for c in fake.followups("token-8016")), timeout=20)
    assert not any(files(c) for c in fake.calls)
