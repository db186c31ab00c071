"""The guard stage inside the moderator: asked when the fast stage is unsure or a real person is pictured."""

from __future__ import annotations

from pathlib import Path

import pytest

from moderation import Moderator, Policy
from moderation.serving import ServedActs
from moderation.guard import OpenAIGuard
from tests.test_guard import GuardServer, completion, serve


def asked(server: GuardServer) -> list[str]:
    """The texts the guard was asked about, in order."""
    return [body["messages"][0]["content"] for _, body in server.requests]


@pytest.mark.parametrize(("answer", "blocked", "category"), [("unsafe\nS12", True, "ncii"), ("safe", False, "none")])
async def test_a_picture_of_a_real_person_goes_to_the_guard(act_model: ServedActs, answer: str, blocked: bool, category: str) -> None:
    async for server, url in serve(completion(answer)):
        moderator = Moderator(act_model, guard=OpenAIGuard(url, "llama-guard-3-1b"))
        verdict = await moderator.check("a watercolor of Barack Obama at the beach", "image")
        assert (verdict.blocked, verdict.category, verdict.stage) == (blocked, category, "guard")
        assert asked(server) == ["Make a picture of: a watercolor of Barack Obama at the beach"]
        # a clear call needs no guard: nobody real, and the fast stage is sure
        assert not (await moderator.check("a red fox in the snow, oil painting", "image")).blocked
        assert len(asked(server)) == 1
        await moderator.close()


async def test_when_the_guard_cannot_answer_the_fast_stage_decides(act_model: ServedActs) -> None:
    moderator = Moderator(act_model, guard=OpenAIGuard("http://127.0.0.1:9/v1", "guard", timeout_s=1))
    verdict = await moderator.check("Taylor Swift playing guitar, oil painting", "image")
    assert not verdict.blocked
    assert any(step.stage == "guard" and "unavailable" in step.outcome for step in verdict.trail)
    await moderator.close()


async def test_the_guard_is_built_from_config_and_a_broken_one_leaves_the_fast_stage(tmp_path: Path) -> None:
    from bot.enforcement import load_moderator
    from tests.conftest import make_config

    section = make_config(tmp_path, moderation={"guard": {"enabled": True, "type": "openai", "base_url": "http://127.0.0.1:9/v1",
                                                          "model": "llama-guard-3-1b", "band": [0.1, 0.9]}}).moderation  # fmt: skip
    moderator = await load_moderator(section)
    assert moderator.guard is not None and moderator.guard.name == "llama-guard-3-1b" and moderator.guard_band == (0.1, 0.9)
    assert "guard model llama-guard-3-1b" in moderator.describe()
    await moderator.close()
    missing = make_config(tmp_path, moderation={"guard": {"enabled": True, "type": "transformers", "model": str(tmp_path / "none")}})
    fast_only = await load_moderator(missing.moderation)
    assert fast_only.available and fast_only.guard is None
    await fast_only.close()


async def test_the_guard_never_lifts_a_confident_refusal(act_model: ServedActs) -> None:
    async for server, url in serve(completion("safe")):
        moderator = Moderator(act_model, guard=OpenAIGuard(url, "guard"))
        fake = await moderator.check("a realistic tweet screenshot of Joe Biden saying he will ban all guns tomorrow", "image")
        assert fake.blocked and fake.category == "deceptive_fake" and asked(server) == []
        assert (await moderator.check("Taylor Swift topless on a beach", "image")).blocked  # a rule: no guard at all
        assert asked(server) == []
        await moderator.close()


async def test_every_category_the_guard_names_is_judged(act_model: ServedActs) -> None:
    async for server, url in serve(completion("unsafe\nS12,S4")):  # sexual content and child sexual exploitation
        opted_in = Moderator(act_model, Policy(allow_nsfw=True), guard=OpenAIGuard(url, "guard"))
        verdict = await opted_in.check("a watercolor of Barack Obama at the beach", "image", nsfw=True)
        assert verdict.blocked and verdict.category == "minors" and verdict.stage == "guard"
        assert verdict.score < 0.8  # the guard's word is not the user's confident refusal: no cooldown strike
        await opted_in.close()
