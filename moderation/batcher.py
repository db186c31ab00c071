"""Micro-batching: concurrent checks share one model call, so throughput holds under load."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

Result = TypeVar("Result")
MAX_BATCH = 32


class Batcher(Generic[Result]):
    """Queue texts from many coroutines; one worker thread classifies whatever has gathered.

    A lone request starts at once (no waiting for company); while the model is busy, later
    requests pile up and go together in the next call.
    """

    def __init__(self, classify: Callable[[Sequence[str]], list[Result]], max_batch: int = MAX_BATCH) -> None:
        self._classify = classify
        self._max_batch = max_batch
        self._pending: list[tuple[Sequence[str], asyncio.Future[list[Result]]]] = []
        self._worker: asyncio.Task[None] | None = None
        # One thread: torch already uses every core for one batch, and order stays simple.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="atelier-moderation")

    async def classify(self, texts: Sequence[str]) -> list[Result]:
        """Results for `texts`, computed in a batch with whatever else is waiting."""
        future: asyncio.Future[list[Result]] = asyncio.get_running_loop().create_future()
        self._pending.append((texts, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain(), name="moderation-batcher")
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch: list[tuple[Sequence[str], asyncio.Future[list[Result]]]] = []
            size = 0
            while self._pending and (not batch or size + len(self._pending[0][0]) <= self._max_batch):
                item = self._pending.pop(0)
                batch.append(item)
                size += len(item[0])
            texts = [text for item_texts, _ in batch for text in item_texts]
            try:
                results = await loop.run_in_executor(self._executor, self._classify, texts)
            except Exception:
                # One unreadable text must not fail its neighbours: retry each request alone.
                for item_texts, future in batch:
                    await self._alone(item_texts, future)
                continue
            offset = 0
            for item_texts, future in batch:
                if not future.done():  # a cancelled waiter just drops its share
                    future.set_result(results[offset : offset + len(item_texts)])
                offset += len(item_texts)

    async def _alone(self, texts: Sequence[str], future: asyncio.Future[list[Result]]) -> None:
        try:
            result = await asyncio.get_running_loop().run_in_executor(self._executor, self._classify, texts)
        except Exception as error:  # this request's own failure, reported to it alone
            if not future.done():
                future.set_exception(error)
            return
        if not future.done():
            future.set_result(result)

    async def close(self) -> None:
        """Finish the work in hand and stop the thread."""
        if self._worker is not None and not self._worker.done():
            await asyncio.gather(self._worker, return_exceptions=True)
        self._executor.shutdown(wait=True)
