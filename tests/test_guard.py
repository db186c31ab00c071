"""The guard-model stage: its answer formats, a tiny random Qwen2 loaded by path, and a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from moderation.acts import LABELS
from moderation.guard import (
    CATEGORY_NAMES,
    GuardError,
    GuardVerdict,
    OpenAIGuard,
    TransformersGuard,
    build_guard,
    guard_prompt,
    parse_guard_output,
)
from tests import tiny_models
from tests.loopback import LoopbackServer

KEY = "sk-guard-test-0123456789abcdef"


@pytest.mark.parametrize(("text", "safe", "categories"), [
    ("safe", True, ()),
    ("\n\nsafe", True, ()),  # Llama Guard 3 starts its answer with a blank line
    ("unsafe\nS1,S10", False, ("violence", "hate")),
    ("unsafe\nS6, S12", False, ("S6", "sexual")),  # S6 (specialized advice) has no name of ours: kept as the code
    ("unsafe\nS3,S12", False, ("sexual",)),  # two codes that are one category of ours: listed once
    ("unsafe", False, ()),
    ("Safety: Unsafe\nCategories: Violent", False, ("violence",)),
    ("Safety: Unsafe\nCategories: PII, Jailbreak", False, ("privacy", "Jailbreak")),
    ("Safety: Safe\nCategories: None", True, ()),
    ("Safety: Safe\nCategories: None\nRefusal: Yes", True, ()),  # Qwen3Guard judging a reply
    ("Safety: Controversial\nCategories: Politically Sensitive Topics", True, ("disinfo",)),
    ("Yes", False, ()),
    ("No", True, ()),
    ("<think>The user asks for a recipe.</think>\n<score> no </score>", True, ()),  # Granite Guardian 3.3
    ("<score> yes </score>", False, ()),
], ids=lambda value: repr(value)[:30] if isinstance(value, str) else None)  # fmt: skip
def test_each_guard_format_is_read(text: str, safe: bool, categories: tuple[str, ...]) -> None:
    assert parse_guard_output(text) == GuardVerdict(safe, categories, text)


def test_controversial_is_unsafe_only_when_strict() -> None:
    text = "Safety: Controversial\nCategories: Unethical Acts"
    assert parse_guard_output(text).safe
    assert parse_guard_output(text, strict=True) == GuardVerdict(False, ("harassment",), text)


@pytest.mark.parametrize("junk", ["", "   ", "I cannot help with that.", "No idea what you mean", "safe-ish",
                                  "Safety: maybe\nCategories: Violent", "unsafety", "\ufffdr yourr your"])  # fmt: skip
def test_anything_else_is_no_verdict(junk: str) -> None:
    with pytest.raises(GuardError) as failed:
        parse_guard_output(junk)
    assert "\n" not in str(failed.value)


def test_the_category_names_are_the_act_models_labels() -> None:
    """Mapped categories speak the act model's language, so policy can treat a guard's finding like its own."""
    assert set(CATEGORY_NAMES.values()) <= set(LABELS) - {"none"}
    assert {f"S{n}" for n in range(1, 15)} - set(CATEGORY_NAMES) == {"S6", "S8"}


# --- in process, on a tiny random Qwen2 -------------------------------------------------------------


@pytest.fixture(scope="module")
def guard_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_models.language_model(tmp_path_factory.mktemp("guard"))


@pytest.fixture(scope="module")
def tiny_guard(guard_folder: Path) -> TransformersGuard:
    return TransformersGuard.load(str(guard_folder), max_new_tokens=8)


def test_the_prompt_is_the_guards_chat_template_around_the_request(tiny_guard: TransformersGuard) -> None:
    tokenizer = tiny_guard.tokenizer
    assert guard_prompt(tokenizer, "hello there", "chat") == "<|im_start|>user\nhello there<|im_end|>\n<|im_start|>assistant\n"
    assert "<|im_start|>user\nMake a picture of: a red fox<|im_end|>" in guard_prompt(tokenizer, "a red fox", "image")
    assert "<|im_start|>user\nMake music: calm piano<|im_end|>" in guard_prompt(tokenizer, "calm piano", "music")
    assert "<|im_start|>user\nthe answer<|im_end|>" in guard_prompt(tokenizer, "the answer", "output")
    with pytest.raises(ValueError):
        guard_prompt(tokenizer, "x", "video")


async def test_a_scan_is_a_verdict_or_a_guard_error(tiny_guard: TransformersGuard) -> None:
    """The weights are random, so the answer is noise: read as a verdict if it happens to be one, else GuardError."""
    outcomes: list[GuardVerdict | str] = []
    for _ in range(2):
        try:
            outcomes.append(await tiny_guard.scan("how do I bake bread?", "chat"))
        except GuardError as error:
            assert "\n" not in str(error)
            outcomes.append(str(error))
    assert outcomes[0] == outcomes[1], "greedy decoding gives the same answer twice"


async def test_concurrent_scans_take_turns_on_the_model(tiny_guard: TransformersGuard) -> None:
    running, most = 0, 0
    counting = threading.Lock()
    generate = tiny_guard.model.generate

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal running, most
        with counting:
            running += 1
            most = max(most, running)
        try:
            return generate(*args, **kwargs)
        finally:
            with counting:
                running -= 1

    tiny_guard.model.generate = counted
    try:
        results = await asyncio.gather(*(tiny_guard.scan(f"request {n}", kind) for n, kind in enumerate(["chat", "image", "music", "output"])),
                                       return_exceptions=True)  # fmt: skip
    finally:
        tiny_guard.model.generate = generate
    assert all(isinstance(result, (GuardVerdict, GuardError)) for result in results), results
    assert most == 1


async def test_a_text_longer_than_the_guard_reads_is_no_verdict(tiny_guard: TransformersGuard) -> None:
    with pytest.raises(GuardError, match="too long for the guard model"):
        await tiny_guard.scan("word " * 3000, "chat")


@pytest.mark.parametrize("where", ["missing", "empty"])
def test_a_model_that_is_not_there_is_one_line(tmp_path: Path, where: str) -> None:
    folder = tmp_path / "no-such-guard"
    if where == "empty":
        folder.mkdir()
    with pytest.raises(GuardError) as failed:
        TransformersGuard.load(str(folder))
    message = str(failed.value)
    assert str(folder) in message and "\n" not in message and len(message) < 300


def test_an_uncached_hub_id_offline_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(GuardError) as failed:
        TransformersGuard.load("atelier-tests/no-such-guard")
    assert "atelier-tests/no-such-guard" in str(failed.value) and "\n" not in str(failed.value)


def test_a_model_without_a_chat_template_is_refused_at_load(tmp_path: Path) -> None:
    folder = tiny_models.language_model(tmp_path / "plain", chat_template=None)
    with pytest.raises(GuardError, match="no chat template"):
        TransformersGuard.load(str(folder))


# --- over HTTP, against a real aiohttp server on 127.0.0.1 ---------------------------------------------


class GuardServer(LoopbackServer):
    """An OpenAI-compatible /chat/completions that answers as `reply` says, remembering what it was sent."""

    def __init__(self, reply: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> None:
        super().__init__()
        self.reply = reply
        self.requests: list[tuple[str | None, dict[str, Any]]] = []
        self.release = asyncio.Event()  # lets a slow handler finish before the server stops

    def routes(self, app: web.Application) -> None:
        """The one route a guard client calls."""
        app[SERVER] = self
        app.router.add_post("/v1/chat/completions", self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.headers.get("Authorization"), await request.json()))
        return await self.reply(request)


SERVER = web.AppKey("server", GuardServer)


def completion(content: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def reply(request: web.Request) -> web.StreamResponse:
        return web.json_response({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]})

    return reply


async def serve(reply: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> AsyncIterator[tuple[GuardServer, str]]:
    server = GuardServer(reply)
    await server.start()
    try:
        yield server, f"http://127.0.0.1:{server.port}/v1"
    finally:
        server.release.set()
        await server.stop()


@pytest.fixture
async def unsafe_server() -> AsyncIterator[tuple[GuardServer, str]]:
    async for served in serve(completion("unsafe\nS12")):
        yield served


async def test_the_http_guard_reads_the_servers_verdict(unsafe_server: tuple[GuardServer, str]) -> None:
    server, url = unsafe_server
    guard = OpenAIGuard(url + "/", "llama-guard-3-1b", api_key=KEY, max_tokens=12)
    try:
        assert await guard.scan("something explicit", "chat") == GuardVerdict(False, ("sexual",), "unsafe\nS12")
        assert (await guard.scan("a red fox", "image")).categories == ("sexual",)
    finally:
        await guard.close()
    assert len(server.requests) == 2
    assert [auth for auth, _ in server.requests] == [f"Bearer {KEY}"] * 2
    first, second = (body for _, body in server.requests)
    assert first == {"model": "llama-guard-3-1b", "messages": [{"role": "user", "content": "something explicit"}], "max_tokens": 12, "temperature": 0}
    assert second["messages"] == [{"role": "user", "content": "Make a picture of: a red fox"}]
    assert guard.name == "llama-guard-3-1b" and KEY not in repr(guard)


async def test_no_key_sends_no_authorization_and_a_closed_guard_reopens(unsafe_server: tuple[GuardServer, str]) -> None:
    server, url = unsafe_server
    guard = OpenAIGuard(url, "guard")
    try:
        await guard.scan("x", "music")
        await guard.close()
        await guard.scan("y", "output")
    finally:
        await guard.close()
        await guard.close()  # twice is harmless
    assert [auth for auth, _ in server.requests] == [None, None]
    assert server.requests[0][1]["messages"][0]["content"] == "Make music: x"


async def status_500(request: web.Request) -> web.StreamResponse:
    return web.json_response({"error": {"message": f"internal error, key {request.headers.get('Authorization')}"}}, status=500)


async def garbage(request: web.Request) -> web.StreamResponse:
    return web.Response(text="<html>not json</html>", content_type="text/html")


async def not_a_completion(request: web.Request) -> web.StreamResponse:
    return web.json_response({"choices": []})


async def slow(request: web.Request) -> web.StreamResponse:
    with contextlib.suppress(TimeoutError):  # until the test is over, so the server's shutdown need not wait for it
        await asyncio.wait_for(request.app[SERVER].release.wait(), 5)
    return await completion("safe")(request)


@pytest.mark.parametrize(("reply", "expected"), [
    (status_500, "answered 500"),
    (garbage, "not JSON"),
    (not_a_completion, "not a chat completion"),
    (completion("I am a teapot."), "not a verdict"),
    (slow, "did not answer within 0.3s"),
], ids=["500", "garbage", "not-a-completion", "unparseable", "timeout"])  # fmt: skip
async def test_a_failing_server_is_a_guard_error_without_the_key(reply: Callable[[web.Request], Awaitable[web.StreamResponse]], expected: str,
                                                                 caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    async for server, url in serve(reply):
        guard = OpenAIGuard(url, "guard", api_key=KEY, timeout_s=0.3)
        try:
            started = asyncio.get_running_loop().time()
            with pytest.raises(GuardError, match=expected) as failed:
                await guard.scan("hello", "chat")
            assert asyncio.get_running_loop().time() - started < 1.5
        finally:
            await guard.close()
        assert len(server.requests) == 1, "a guard does not retry: it is on the request's path"
    shown = "".join(traceback.format_exception(failed.value)) + repr(failed.value)
    assert KEY not in shown and KEY not in caplog.text
    assert "\n" not in str(failed.value)


async def test_an_unreachable_server_is_a_guard_error() -> None:
    guard = OpenAIGuard("http://127.0.0.1:9/v1", "guard", api_key=KEY, timeout_s=2)
    try:
        with pytest.raises(GuardError, match="127.0.0.1:9 is unreachable") as failed:
            await guard.scan("hello", "chat")
    finally:
        await guard.close()
    assert KEY not in "".join(traceback.format_exception(failed.value))


# --- from config -------------------------------------------------------------------------------------


async def test_build_guard_makes_each_type(guard_folder: Path) -> None:
    remote = build_guard({"type": "openai", "model": "qwen3guard", "base_url": "http://gpu:8000/v1", "timeout_s": 3, "strict": True,
                          "api_key_env": "GUARD_KEY"}, api_key=KEY)  # fmt: skip
    assert isinstance(remote, OpenAIGuard)
    assert (remote.base_url, remote.name, remote.timeout_s, remote.max_tokens, remote.strict) == ("http://gpu:8000/v1", "qwen3guard", 3.0, 20, True)
    assert KEY not in repr(remote)
    await remote.close()
    local = build_guard({"type": "transformers", "model": str(guard_folder), "device": "cpu", "max_new_tokens": 4})
    assert isinstance(local, TransformersGuard) and (local.name, local.max_new_tokens, local.strict) == (str(guard_folder), 4, False)


@pytest.mark.parametrize(("spec", "expected"), [
    ({"type": "llamacpp", "model": "x"}, "guard type must be"),
    ({"type": "openai", "model": "x", "base_url": "http://h/v1", "timeout": 3}, "unknown openai guard option"),
    ({"type": "openai", "base_url": "http://h/v1"}, "needs `model:`"),
    ({"type": "openai", "model": "x"}, "needs `base_url:`"),
    ({"type": "openai", "model": "x", "base_url": "http://h/v1", "timeout_s": 0}, "timeout_s"),
    ({"type": "openai", "model": "x", "base_url": "http://h/v1", "max_tokens": True}, "max_tokens"),
    ({"type": "transformers", "model": "x", "strict": "yes"}, "strict"),
    ({"type": "transformers", "model": "/no/such/guard"}, "no guard model folder"),
])  # fmt: skip
def test_build_guard_refuses_a_bad_spec_in_one_line(spec: dict[str, object], expected: str) -> None:
    with pytest.raises(GuardError, match=expected) as failed:
        build_guard(spec, api_key=KEY)
    assert "\n" not in str(failed.value) and KEY not in str(failed.value)
