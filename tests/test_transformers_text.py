"""The `transformers` text backend on a tiny random Qwen2 built offline: template, streaming, end token, batching, fallback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.memory import MemoryAdapter
from bot.backends import registry, transformers_text
from bot.backends.base import TextOptions
from bot.backends.transformers_text import TransformersText
from bot.config import BackendConfig
from bot.core import Bot
from bot.messages import Turn
from tests import tiny_models
from tests.conftest import make_config

GREEDY = TextOptions(max_tokens=12, temperature=0)


@pytest.fixture(scope="module")
def lm_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_models.language_model(tmp_path_factory.mktemp("lm"))


async def load(folder: Path, **options: object) -> TransformersText:
    return await transformers_text.create(BackendConfig(type="transformers", model=str(folder), options=dict(options)))


@pytest.fixture(params=[True, False], ids=["batched", "one-at-a-time"])
async def lm(request: pytest.FixtureRequest, lm_folder: Path) -> AsyncIterator[TransformersText]:
    backend = await load(lm_folder, batching=request.param)
    assert backend.batching is request.param
    yield backend
    await backend.close()


def greedy_ids(folder: Path, turns: list[Turn], count: int) -> list[int]:
    """What plain transformers generate() produces greedily, ignoring the end token (the reference)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    prompt = tokenizer.apply_chat_template([{"role": t.role, "content": t.text} for t in turns], add_generation_prompt=True, return_dict=True)["input_ids"]
    with torch.inference_mode():
        out = model.generate(torch.tensor([prompt]), max_new_tokens=count, do_sample=False, eos_token_id=None, min_new_tokens=count)
    return out[0, len(prompt):].tolist()


async def test_the_prompt_uses_the_models_chat_template(lm: TransformersText) -> None:
    text = lm.tokenizer.decode(lm.prompt_ids([Turn("system", "Be brief."), Turn("user", "hello there")]))
    assert text == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhello there<|im_end|>\n<|im_start|>assistant\n"
    assert lm.count_tokens("hello there") == len(lm.tokenizer.encode("hello there", add_special_tokens=False))
    assert lm.context_tokens == 1024  # the model's own max_position_embeddings


async def test_a_model_without_a_template_gets_role_lines(tmp_path: Path) -> None:
    backend = await load(tiny_models.language_model(tmp_path / "plain", chat_template=None))
    try:
        assert backend.tokenizer.decode(backend.prompt_ids([Turn("user", "hi")])) == "user: hi\nassistant:"
        assert "".join([piece async for piece in backend.stream([Turn("user", "hi")], GREEDY)])
    finally:
        await backend.close()


async def test_tokens_stream_in_order_and_stop_at_the_models_end_token(lm_folder: Path, tmp_path: Path) -> None:
    turns = [Turn("user", "tell me about the sea")]
    reference = greedy_ids(lm_folder, turns, 12)
    # A model with the same weights whose end token is a later token it would say: it must stop right before it.
    stop_at = next(i for i, token in enumerate(reference) if i >= 6 and token not in reference[:i])
    folder = tiny_models.language_model(tmp_path / "eos", eos_token_id=reference[stop_at])
    for batching in (True, False):
        backend = await load(folder, batching=batching)
        try:
            pieces = [piece async for piece in backend.stream(turns, GREEDY)]
            assert len(pieces) > 1, "the reply arrives in pieces, not at once"
            assert "".join(pieces) == backend.tokenizer.decode(reference[:stop_at], skip_special_tokens=True)
        finally:
            await backend.close()


@pytest.mark.parametrize("batching", [True, False])
async def test_top_k_1_makes_sampling_pick_the_likeliest_token(lm_folder: Path, batching: bool) -> None:
    turns = [Turn("user", "go on")]
    reference = greedy_ids(lm_folder, turns, 8)
    backend = await load(lm_folder, batching=batching, top_k=1)
    try:
        hot = TextOptions(max_tokens=3, temperature=1.5)  # would wander without top_k
        assert [await _join(backend.stream(turns, hot)) for _ in range(3)] == [backend.tokenizer.decode(reference[:3])] * 3
    finally:
        await backend.close()


async def test_max_tokens_bounds_the_reply(lm: TransformersText, lm_folder: Path) -> None:
    turns = [Turn("user", "go on")]
    reference = greedy_ids(lm_folder, turns, 8)
    assert not lm.stop_ids & set(reference[:3])
    text = "".join([piece async for piece in lm.stream(turns, TextOptions(max_tokens=3, temperature=0))])
    assert text == lm.tokenizer.decode(reference[:3])


async def test_concurrent_conversations_are_batched(lm_folder: Path) -> None:
    """Every stream starts before any finishes: they share the model instead of queueing for it."""
    backend = await load(lm_folder)
    eos = backend.stop_ids
    backend.stop_ids = set()  # a random model may say its end token early; here every stream runs its full length
    try:
        starts: list[float] = []
        ends: list[float] = []

        async def one(index: int) -> str:
            pieces = []
            async for piece in backend.stream([Turn("user", f"question number {index}")], TextOptions(max_tokens=40, temperature=0.8)):
                if not pieces:
                    starts.append(time.perf_counter())
                pieces.append(piece)
            ends.append(time.perf_counter())
            return "".join(pieces)

        replies = await asyncio.gather(*(one(i) for i in range(6)))
        assert all(replies) and len(starts) == 6
        assert max(starts) < min(ends)
    finally:
        backend.stop_ids = eos
        await backend.close()


async def test_a_reader_that_leaves_stops_its_generation(lm: TransformersText) -> None:
    steps = [0]
    hook = lm.model.register_forward_hook(lambda *args: steps.__setitem__(0, steps[0] + 1))
    stop_ids, lm.stop_ids = lm.stop_ids, set()  # no early end token: left alone it would run all 400 steps
    try:
        stream = lm.stream([Turn("user", "a long story please")], TextOptions(max_tokens=400, temperature=1.0))
        async for _ in stream:
            break
        await stream.aclose()
        await asyncio.sleep(0.5)
        after_leaving = steps[0]
        await asyncio.sleep(0.5)
        assert steps[0] == after_leaving < 100, "the model kept generating for nobody"
        assert await asyncio.wait_for(_collect(lm, "and now a short one"), timeout=30)
    finally:
        lm.stop_ids = stop_ids
        hook.remove()


async def _collect(lm: TransformersText, text: str) -> str:
    return "".join([piece async for piece in lm.stream([Turn("user", text)], TextOptions(max_tokens=8, temperature=0.5))])


@pytest.mark.parametrize(("config", "reason"), [
    (BackendConfig(type="transformers", model="/nowhere/model"), "there is no model folder at /nowhere/model"),
    (BackendConfig(type="transformers", model="Org/not-cached-model"), "not in the local model cache and HF_HUB_OFFLINE is set"),
    (BackendConfig(type="transformers", model="Org/x", device="cuda"), "device: cuda was asked for, but no GPU is visible"),
    (BackendConfig(type="transformers"), "needs `model:`"),
    (BackendConfig(type="transformers", model="Org/x", options={"beams": 4}), "unknown transformers option(s): beams (known: batching, cache_fraction, context_tokens, top_k, top_p)"),
])  # fmt: skip
async def test_a_model_that_cannot_load_falls_back_and_says_why(monkeypatch: pytest.MonkeyPatch, config: BackendConfig, reason: str) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-hf-home")
    if config.device == "cuda" and pytest.importorskip("torch").cuda.is_available():
        pytest.skip("this machine has a GPU")
    backend, status = await registry.load("text", config.model_copy(update={"fallback": BackendConfig(type="markov")}))
    assert status.active == "markov" and reason in status.reason
    await backend.close()


async def test_a_folder_without_weights_says_so(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    _, status = await registry.load("text", BackendConfig(type="transformers", model=str(tmp_path / "empty")))
    assert status.active is None and f"{tmp_path / 'empty'} does not hold a usable tokenizer" in status.reason


async def test_the_bot_chats_with_the_tiny_model(tmp_path: Path, lm_folder: Path) -> None:
    config = make_config(tmp_path, backends={"text": {"type": "transformers", "model": str(lm_folder), "fallback": {"type": "markov"}}})
    bot = await Bot.start(config)
    try:
        assert f"text: transformers ({lm_folder})" in bot.status_lines()
        chat = MemoryAdapter(bot)
        replies = await chat.say("hello, what can you do?")
        assert replies and replies[-1] and not any("not available" in reply for reply in replies)
    finally:
        await bot.close()


async def test_the_host_streams_the_model_to_the_openai_backend(lm_folder: Path) -> None:
    """Over HTTP the same greedy answer arrives as in-process, and concurrent streams share the model's batch."""
    from bot import server
    from bot.backends.openai_text import OpenAIText
    from bot.backends.remote import HostClient
    from tests.test_server import listen

    local = await load(lm_folder)
    assert local.concurrency > 1
    runner, url = await listen(server.Host(local, None, None, None).app())
    client = OpenAIText(HostClient(f"{url}/v1", None, timeout_s=30), None, context_tokens=local.context_tokens)
    try:
        turns = [Turn("system", "Be brief."), Turn("user", "hello")]
        expected = "".join([piece async for piece in local.stream(turns, GREEDY)])
        over_http = await asyncio.gather(*(_join(client.stream(turns, GREEDY)) for _ in range(4)))
        assert over_http == [expected] * 4
    finally:
        await client.close()
        await runner.cleanup()
        await local.close()


async def _join(pieces: AsyncIterator[str]) -> str:
    return "".join([piece async for piece in pieces])
