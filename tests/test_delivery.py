"""A finished job ends in the user's hands or in a message saying why not, and the store says which."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from adapters.memory import MemoryAdapter, MemoryReply
from bot.core import Bot
from bot.messages import Artifact
from tests.test_jobs_console import run_console
from tests.test_store_faults import make_read_only, make_writable


async def stored(bot: Bot, job_id: str) -> dict[str, object]:
    row = await bot.store.job(job_id)
    assert row is not None
    return row


async def test_a_picture_that_cannot_be_saved_is_a_failure_the_user_hears_about(markov_bot: Bot, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    if not make_read_only(out):
        pytest.skip("this machine cannot make a folder read-only for this process")
    try:
        lines = await run_console(markov_bot, tmp_path, "/imagine a lighthouse at dusk --seed 3 --size 64x64\n")
    finally:
        make_writable(out)
    job_id = re.search(r"Queued image job ([0-9a-f]{8})", lines[0]).group(1)  # type: ignore[union-attr]
    assert lines[-1] == (f"Your image job {job_id} was made but could not be delivered (the output folder is not writable). "
                         f"/reroll {job_id} makes it again.")  # fmt: skip
    row = await stored(markov_bot, job_id)
    assert row["status"] == "failed" and row["delivery"] == "told"
    assert "could not be delivered" in str(row["error"])
    assert not any(out.iterdir())


class DeadPlatform(MemoryReply):
    """A conversation the platform no longer lets the bot post to (channel deleted, bot kicked)."""

    async def attach(self, artifact: Artifact, caption: str = "") -> None:
        raise ConnectionResetError("platform gone")

    async def error(self, text: str) -> None:
        raise ConnectionResetError("platform gone")


async def test_a_job_whose_user_cannot_be_reached_is_recorded_as_untold(markov_bot: Bot) -> None:
    chat = MemoryAdapter(markov_bot)
    await markov_bot.start_jobs()
    reply = DeadPlatform()
    await markov_bot.handle(chat.message("/imagine a quiet harbour --seed 4 --size 64x64"), reply)
    job_id = re.search(r"image job ([0-9a-f]{8})", reply.texts[0]).group(1)  # type: ignore[union-attr]
    await asyncio.wait_for(markov_bot.jobs.drain(), 30)
    row = await stored(markov_bot, job_id)
    assert row["status"] == "failed" and row["delivery"] == "untold"


async def test_a_delivered_job_is_recorded_as_delivered(markov_bot: Bot, tmp_path: Path) -> None:
    lines = await run_console(markov_bot, tmp_path, "/compose calm piano --duration 2 --seed 3\n")
    job_id = re.search(r"Queued music job ([0-9a-f]{8})", lines[0]).group(1)  # type: ignore[union-attr]
    row = await stored(markov_bot, job_id)
    assert row["status"] == "done" and row["delivery"] == "delivered"
