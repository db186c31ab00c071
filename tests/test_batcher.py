"""Micro-batching: concurrent checks share model calls, each caller gets its own answers, one bad text fails alone."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import pytest

from moderation.batcher import Batcher


class SlowModel:
    """A stand-in for the classifier: 30 ms per call, whatever the batch size; refuses texts saying "unreadable"."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.threads: set[str] = set()

    def __call__(self, texts: Sequence[str]) -> list[dict[str, float]]:
        self.calls.append(list(texts))
        self.threads.add(threading.current_thread().name)
        time.sleep(0.03)
        if any("unreadable" in text for text in texts):
            raise ValueError("cannot read that")
        return [{"length": float(len(text))} for text in texts]


async def test_concurrent_checks_share_calls_and_each_gets_its_own_answers() -> None:
    model = SlowModel()
    batcher = Batcher(model, max_batch=8)
    texts = [["x" * i, "y" * (i + 100)] for i in range(20)]
    try:
        assert await batcher.classify(["alone"]) == [{"length": 5.0}]  # a lone check waits for no company
        results = await asyncio.gather(*(batcher.classify(pair) for pair in texts))
    finally:
        await batcher.close()
    assert results == [[{"length": float(i)}, {"length": float(i + 100)}] for i in range(20)]
    assert model.calls[0] == ["alone"]
    assert len(model.calls) == 1 + 5 and all(len(call) == 8 for call in model.calls[1:])  # 40 texts, 8 at a time
    assert all(name.startswith("atelier-moderation") for name in model.threads)  # never on the event loop


async def test_one_unreadable_text_fails_alone() -> None:
    batcher = Batcher(SlowModel())
    try:
        results = await asyncio.gather(
            batcher.classify(["first"]), *(batcher.classify([text]) for text in ("fine", "unreadable", "also fine")),
            return_exceptions=True,
        )
    finally:
        await batcher.close()
    assert results[0] == [{"length": 5.0}]
    assert results[1] == [{"length": 4.0}] and results[3] == [{"length": 9.0}]
    assert isinstance(results[2], ValueError)
    with pytest.raises(ValueError):
        await Batcher(SlowModel()).classify(["unreadable"])
