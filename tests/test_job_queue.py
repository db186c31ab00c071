"""Jobs on a PostgreSQL store: two bot processes share one queue (procrastinate) on a real server."""

from __future__ import annotations

import asyncio
import re
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from adapters.memory import MemoryReply
from bot.config import JobsSection, QueueSection
from bot.errors import UserInputError
from bot.job_queue import QueueScheduler
from bot.job_running import Job
from bot.jobs import QueueFull
from bot.store import ConversationStore
from tests.test_jobs import Runners, until

REPO = Path(__file__).resolve().parent.parent


class Process:
    """One bot process's side of the queue: its own store connection and scheduler, talking to one shared channel."""

    def __init__(self, store: ConversationStore, jobs: QueueScheduler) -> None:
        self.store = store
        self.jobs = jobs


@pytest.fixture
def channel() -> MemoryReply:
    """The conversation every job is posted to, as a platform channel both processes can reach."""
    return MemoryReply()


@pytest.fixture
async def processes(postgres_url: str, channel: MemoryReply) -> AsyncIterator[Callable[..., Any]]:
    opened: list[Process] = []

    async def start(runner: Any = None, *, work: bool = True, **limits: Any) -> Process:
        store = await ConversationStore.open(postgres_url)
        config = JobsSection(image=QueueSection(slots=limits.pop("slots", 1), timeout_s=30), takeover_after_s=2, **limits)
        process = Process(store, QueueScheduler(store, config, {"image": runner or Runners().instant}))
        opened.append(process)
        if work:
            await process.jobs.start(lambda job: channel)
        else:
            await process.jobs.open(lambda job: channel)
        return process

    yield start
    for process in opened:
        await process.jobs.stop()
        await process.store.close()


async def submit(process: Process, user: str, channel: MemoryReply, prompt: str = "a cat") -> Any:
    return await process.jobs.submit("image", f"memory:{user}", "memory:w:c:", None, {"prompt": prompt, "seed": 1}, channel)


async def stored(process: Process, job_id: str) -> dict[str, Any]:
    row = await process.store.job(job_id)
    assert row is not None
    return row


async def test_a_job_accepted_by_one_process_runs_on_another_and_reaches_the_channel(
    processes: Callable[..., Any], channel: MemoryReply
) -> None:
    runners = Runners()
    accepting = await processes(work=False)
    await processes(runners.instant)
    job = await submit(accepting, "alice", channel)
    await asyncio.wait_for(accepting.jobs.drain(), 20)
    assert [j.id for j in runners.started] == [job.id]
    assert channel.texts[0].startswith(f"Queued image job {job.id} (next in line), seed 1.")
    assert [event.kind for event in channel.events].count("attach") == 1
    row = await stored(accepting, job.id)
    assert (row["status"], row["attempts"], row["delivery"]) == ("done", 1, "delivered")


async def test_caps_and_the_queue_limit_hold_across_processes(processes: Callable[..., Any], channel: MemoryReply) -> None:
    one = await processes(work=False, per_user_pending=2, queue_limit=3)
    other = await processes(work=False, per_user_pending=2, queue_limit=3)
    await submit(one, "alice", channel)
    await submit(other, "alice", channel)
    with pytest.raises(QueueFull, match="You already have 2 jobs"):
        await submit(one, "alice", channel)
    await submit(one, "bob", channel)
    with pytest.raises(QueueFull, match="The queue is full"):
        await submit(other, "carol", channel)


async def test_a_users_second_job_waits_behind_everyone_elses_first(processes: Callable[..., Any], channel: MemoryReply) -> None:
    accepting = await processes(work=False, per_user_pending=5)
    a1, a2 = await submit(accepting, "alice", channel, "a1"), await submit(accepting, "alice", channel, "a2")
    b1 = await submit(accepting, "bob", channel, "b1")
    assert [await accepting.jobs.position(job) for job in await accepting.jobs.jobs_of()] == [1, 3, 2]
    runners = Runners()
    await processes(runners.instant, per_user_pending=5)
    await asyncio.wait_for(accepting.jobs.drain(), 20)
    assert [job.id for job in runners.started] == [a1.id, b1.id, a2.id]


async def test_a_queued_job_cancelled_in_another_process_never_runs(processes: Callable[..., Any], channel: MemoryReply) -> None:
    accepting = await processes(work=False)
    other = await processes(work=False)
    job = await submit(accepting, "alice", channel)
    with pytest.raises(UserInputError, match="someone else's"):
        await other.jobs.cancel(job.id, "memory:bob", is_admin=False)
    await other.jobs.cancel(job.id, "memory:alice", is_admin=False)
    runners = Runners()
    await processes(runners.instant)
    await asyncio.wait_for(accepting.jobs.drain(), 20)
    assert runners.started == []
    assert channel.texts[-1] == f"Cancelled image job {job.id}."
    assert (await stored(accepting, job.id))["status"] == "cancelled"


async def test_a_running_job_is_cancelled_from_another_process_at_its_next_step(
    processes: Callable[..., Any], channel: MemoryReply
) -> None:
    runners = Runners()
    accepting = await processes(work=False)
    await processes(runners.stepping)
    job = await submit(accepting, "alice", channel)
    await until(lambda: runners.started)
    await until(lambda: any(event.kind == "progress" for event in channel.events))
    assert "running" in (await accepting.jobs.where(await accepting.jobs.get(job.id)))  # type: ignore[arg-type]
    started = time.monotonic()
    await accepting.jobs.cancel(job.id, "memory:alice", is_admin=False)
    await asyncio.wait_for(accepting.jobs.drain(), 20)
    assert time.monotonic() - started < 8  # the stepping job would have run 10 s
    assert channel.texts[-1] == f"Cancelled image job {job.id}."
    assert (await stored(accepting, job.id))["status"] == "cancelled"


async def test_a_job_whose_process_is_killed_mid_run_finishes_once_on_another(
    processes: Callable[..., Any], channel: MemoryReply, postgres_url: str, tmp_path: Path
) -> None:
    accepting = await processes(work=False)
    started = tmp_path / "started"
    child = subprocess.Popen([sys.executable, "-m", "tests.queue_process", postgres_url, str(started)], cwd=REPO,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        job = await submit(accepting, "alice", channel)
        deadline = time.monotonic() + 30
        while not started.exists():
            assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
            assert time.monotonic() < deadline, "the other process never started the job"
            await asyncio.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert (await stored(accepting, job.id))["status"] == "running"
    runners = Runners()
    await processes(runners.instant)  # a live process takes over once the dead one's heartbeat is 2 s old
    await asyncio.wait_for(accepting.jobs.drain(), 30)
    assert [j.id for j in runners.started] == [job.id]
    assert [event.kind for event in channel.events].count("attach") == 1
    assert f"Retrying your image job {job.id}: the bot process running it stopped." in channel.texts
    row = await stored(accepting, job.id)
    assert (row["status"], row["attempts"]) == ("done", 2)


async def test_the_console_on_a_postgresql_store_makes_pictures_through_the_queue(postgres_url: str, tmp_path: Path) -> None:
    from bot.core import Bot
    from tests.conftest import make_config
    from tests.test_jobs_console import run_console

    bot = await Bot.start(make_config(tmp_path, bot={"db": postgres_url}))
    try:
        assert isinstance(bot.jobs, QueueScheduler)
        lines = await run_console(bot, tmp_path, "/imagine a red fox --seed 5 --size 64x64\n")
    finally:
        await bot.close()
    assert re.fullmatch(r"Queued image job [0-9a-f]{8} \(next in line\), seed 5\. /cancel [0-9a-f]{8} to stop it\.", lines[0])
    saved = Path(lines[-1].split(" to ", 1)[1])
    assert saved.read_bytes().startswith(b"\x89PNG")


async def test_a_sweep_never_requeues_a_job_another_process_claimed_meanwhile(
    processes: Callable[..., Any], channel: MemoryReply
) -> None:
    accepting = await processes(work=False)
    job = await submit(accepting, "alice", channel)
    seen = Job.from_row(await stored(accepting, job.id))  # what a sweep read a moment ago: queued
    runners = Runners()
    runners.gate.clear()  # the other process claims the job and holds it running
    await processes(runners.instant)
    await until(lambda: runners.started)
    await accepting.jobs._recover(seen)  # the sweep acts on what it read: it must not undo the claim
    assert (await stored(accepting, job.id))["status"] == "running"
    assert not any("Resuming" in text for text in channel.texts)
    runners.gate.set()
    await asyncio.wait_for(accepting.jobs.drain(), 20)
    assert [event.kind for event in channel.events].count("attach") == 1


async def test_a_run_taken_over_by_another_process_keeps_quiet(processes: Callable[..., Any], channel: MemoryReply) -> None:
    runners = Runners()
    runners.gate.clear()
    running = await processes(runners.instant)
    job = await submit(running, "alice", channel)
    await until(lambda: runners.started)
    # As if this process had gone silent and another had taken the job over (a new queue entry owns the row).
    await running.store.engine.execute("UPDATE jobs SET queue_id = queue_id + 1000 WHERE id = ?", [job.id])
    runners.gate.set()
    await until(lambda: job.id not in running.jobs._running)
    assert not any(event.kind == "attach" for event in channel.events)
    assert (await stored(running, job.id))["status"] == "running"  # the new owner's record is not overwritten


async def test_workers_come_back_after_a_database_failure_stopped_them(
    processes: Callable[..., Any], channel: MemoryReply, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot import job_queue

    monkeypatch.setattr(job_queue, "WORKER_RESTART_S", 0.2)
    runners = Runners()
    worker = await processes(runners.instant)
    await asyncio.sleep(0.5)  # the workers are polling
    # The queue's table is gone for a moment (as during a failover): the worker's next fetch fails and ends it.
    await worker.store.engine.execute("ALTER TABLE procrastinate_jobs RENAME TO procrastinate_jobs_away")
    await asyncio.sleep(1.5)
    await worker.store.engine.execute("ALTER TABLE procrastinate_jobs_away RENAME TO procrastinate_jobs")
    job = await submit(worker, "alice", channel)
    await asyncio.wait_for(worker.jobs.drain(), 30)
    assert [j.id for j in runners.started] == [job.id]


async def test_a_stopping_process_takes_no_new_job(processes: Callable[..., Any], channel: MemoryReply) -> None:
    worker = await processes(Runners().instant)
    await worker.jobs.stop()
    with pytest.raises(QueueFull, match="restarting"):
        await submit(worker, "alice", channel)
    assert await worker.store.count("jobs") == 0 and channel.texts == []
