"""The scheduler: fairness, caps, cancellation, timeouts, failures, persistence and recovery."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.memory import MemoryReply
from bot.backends.media import Progress
from bot.config import JobsSection, QueueSection
from bot.errors import UserInputError
from bot.jobs import Job, QueueFull, Scheduler
from bot.messages import Artifact
from bot.store import ConversationStore


def png(job: Job) -> list[Artifact]:
    return [Artifact(b"png", "image/png", f"{job.id}.png", {"seed": str(job.params["seed"])})]


class Runners:
    """Real runner functions with knobs: record start order, hold, fail, or step with progress."""

    def __init__(self) -> None:
        self.started: list[Job] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def instant(self, job: Job, progress: Progress) -> list[Artifact]:
        self.started.append(job)
        await self.gate.wait()
        progress(1.0, "done")
        return png(job)

    async def stepping(self, job: Job, progress: Progress) -> list[Artifact]:
        """Like an embedded backend: works in a thread, reporting progress every 10 ms for 10 s."""
        self.started.append(job)

        def work() -> list[Artifact]:
            for step in range(1000):
                progress(step / 1000, f"step {step}")
                time.sleep(0.01)
            return png(job)

        return await asyncio.to_thread(work)

    async def silent(self, job: Job, progress: Progress) -> list[Artifact]:
        """Like a remote backend that never reports progress."""
        self.started.append(job)
        await asyncio.sleep(30)
        return png(job)

    async def broken(self, job: Job, progress: Progress) -> list[Artifact]:
        self.started.append(job)
        raise RuntimeError("GPU fell off the bus")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[ConversationStore]:
    opened = await ConversationStore.open(tmp_path / "jobs.db")
    yield opened
    await opened.close()


def scheduler(store: ConversationStore, runner: Any, **limits: Any) -> Scheduler:
    image = QueueSection(slots=limits.pop("slots", 1), timeout_s=limits.pop("timeout_s", 30))
    config = JobsSection(image=image, **limits)
    return Scheduler(store, config, {"image": runner})


async def submit(jobs: Scheduler, user: str, prompt: str = "a cat", reply: MemoryReply | None = None) -> Job:
    return await jobs.submit("image", f"memory:{user}", "memory:w:c:", None, {"prompt": prompt, "seed": 1}, reply or MemoryReply())


async def test_twenty_users_bursting_ten_jobs_each_are_served_round_robin(store: ConversationStore) -> None:
    runners = Runners()
    jobs = scheduler(store, runners.instant, per_user_pending=10, queue_limit=1000)
    for user in range(20):
        for n in range(10):
            await submit(jobs, f"u{user}", f"job {n}")
    await jobs.start(lambda job: None)
    await asyncio.wait_for(jobs.drain(), 20)
    await jobs.stop()
    order = [(job.user, job.params["prompt"]) for job in runners.started]
    assert len(order) == 200
    first_third = min(i for i, (_, prompt) in enumerate(order) if prompt == "job 2")
    last_first = max(i for i, (_, prompt) in enumerate(order) if prompt == "job 0")
    assert last_first < first_third


async def test_positions_count_fairly_and_are_shown_at_once(store: ConversationStore) -> None:
    runners = Runners()
    runners.gate.clear()
    jobs = scheduler(store, runners.instant, per_user_pending=5)
    await jobs.start(lambda job: None)
    a1 = await submit(jobs, "a")
    await asyncio.sleep(0.01)  # a1 is now running
    a2, a3, b1 = await submit(jobs, "a"), await submit(jobs, "a"), await submit(jobs, "b")
    assert [jobs.position(j) for j in (a1, a2, a3, b1)] == [0, 1, 3, 2]
    runners.gate.set()
    await jobs.drain()
    await jobs.stop()


async def test_per_user_cap_and_global_bound_refuse_with_the_reason(store: ConversationStore) -> None:
    runners = Runners()
    jobs = scheduler(store, runners.instant, per_user_pending=2, queue_limit=3)
    first, second = await submit(jobs, "a"), await submit(jobs, "a")
    with pytest.raises(QueueFull) as caught:
        await submit(jobs, "a")
    assert caught.value.user_message == (
        f"You already have 2 jobs waiting or running ({first.id}, {second.id}); wait for one to finish or /cancel one."
    )
    await submit(jobs, "b")
    with pytest.raises(QueueFull, match=r"The queue is full \(3 jobs waiting\)"):
        await submit(jobs, "c")


async def test_results_are_delivered_with_the_seed_and_the_row_is_kept(store: ConversationStore) -> None:
    runners = Runners()
    jobs = scheduler(store, runners.instant)
    await jobs.start(lambda job: None)
    reply = MemoryReply()
    job = await submit(jobs, "a", reply=reply)
    await jobs.drain()
    await jobs.stop()
    kinds = [e.kind for e in reply.events]
    assert kinds == ["progress", "attach"]
    assert reply.events[-1].text == f"[{job.id} · seed 1]"
    with sqlite3.connect(store.path) as db:
        assert db.execute("SELECT status, attempts FROM jobs WHERE id = ?", [job.id]).fetchone() == ("done", 1)


async def test_cancelling_a_queued_job_is_immediate(store: ConversationStore) -> None:
    runners = Runners()
    runners.gate.clear()
    jobs = scheduler(store, runners.instant)
    await jobs.start(lambda job: None)
    await submit(jobs, "a")
    reply = MemoryReply()
    queued = await submit(jobs, "a", reply=reply)
    await jobs.cancel(queued.id, "memory:a", is_admin=False)
    assert reply.texts == [f"Cancelled image job {queued.id}."]
    runners.gate.set()
    await jobs.drain()
    await jobs.stop()
    assert queued not in runners.started


@pytest.mark.parametrize("kind", ["stepping", "silent"])
async def test_cancelling_a_running_job_stops_it_within_a_second_and_frees_the_slot(store: ConversationStore, kind: str) -> None:
    runners = Runners()
    jobs = scheduler(store, getattr(runners, kind))
    await jobs.start(lambda job: None)
    reply = MemoryReply()
    running = await submit(jobs, "a", reply=reply)
    waiting = await submit(jobs, "b")
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await jobs.cancel(None, "memory:a", is_admin=False)
    while running.status == "running":
        await asyncio.sleep(0.01)
    assert time.monotonic() - started <= 1.2
    assert running.status == "cancelled" and reply.texts[-1] == f"Cancelled image job {running.id}."
    await asyncio.sleep(0.05)
    assert runners.started[-1] is waiting  # the slot went to the next job
    await jobs.cancel(waiting.id, "memory:admin", is_admin=True)
    await jobs.drain()
    await jobs.stop()


async def test_only_the_requester_or_an_admin_can_cancel(store: ConversationStore) -> None:
    runners = Runners()
    runners.gate.clear()
    jobs = scheduler(store, runners.instant)
    job = await submit(jobs, "a")
    with pytest.raises(UserInputError, match=f"Job {job.id} is someone else's"):
        await jobs.cancel(job.id, "memory:b", is_admin=False)
    with pytest.raises(UserInputError, match="No job nope is queued or running"):
        await jobs.cancel("nope", "memory:a", is_admin=False)
    with pytest.raises(UserInputError, match="You have no queued or running jobs"):
        await jobs.cancel(None, "memory:b", is_admin=False)


async def test_a_job_over_its_time_limit_fails_and_says_so(store: ConversationStore) -> None:
    runners = Runners()
    jobs = scheduler(store, runners.stepping, timeout_s=0.2)
    await jobs.start(lambda job: None)
    reply = MemoryReply()
    job = await submit(jobs, "a", reply=reply)
    await asyncio.wait_for(jobs.drain(), 5)
    await jobs.stop()
    assert job.status == "failed"
    assert reply.texts[-1] == f"Your image job {job.id} failed: it took longer than 0.2s. Try again, or /status for details."


async def test_a_backend_failure_is_told_and_the_next_job_still_runs(store: ConversationStore) -> None:
    runners = Runners()
    calls = 0

    async def flaky(job: Job, progress: Progress) -> list[Artifact]:
        nonlocal calls
        calls += 1
        if calls == 1:
            return await runners.broken(job, progress)
        return await runners.instant(job, progress)

    jobs = scheduler(store, flaky)
    await jobs.start(lambda job: None)
    first, second = MemoryReply(), MemoryReply()
    await submit(jobs, "a", reply=first)
    await submit(jobs, "b", reply=second)
    await jobs.drain()
    await jobs.stop()
    assert "failed: the image generator failed (RuntimeError)" in first.texts[-1]
    assert "GPU" not in first.texts[-1]
    assert [e.kind for e in second.events][-1] == "attach"


async def test_after_a_restart_queued_jobs_run_and_running_ones_retry_once(store: ConversationStore) -> None:
    now = time.time()
    rows = [
        ("q1", "queued", 0), ("r1", "running", 1), ("r2", "running", 2),
    ]
    for job_id, status, attempts in rows:
        await store.insert_job({
            "id": job_id, "kind": "image", "user_id": f"memory:{job_id}", "conversation": "memory:w:c:",
            "message_id": None, "params": '{"prompt": "x", "seed": 3}', "status": status,
            "attempts": attempts, "error": None, "created_at": now,
        })
    runners = Runners()
    jobs = scheduler(store, runners.instant)
    replies: dict[str, MemoryReply] = {}
    await jobs.start(lambda job: replies.setdefault(job.id, MemoryReply()))
    await jobs.drain()
    await jobs.stop()
    assert sorted(job.id for job in runners.started) == ["q1", "r1"]
    assert replies["q1"].texts[0] == "Resuming your image job q1 after a restart (starting now)."
    assert replies["r1"].texts[0] == "Retrying your image job r1 after a restart (position 1)."
    assert replies["r2"].texts == ["Your image job r2 (x) failed: the bot restarted while it was running, twice. Please send it again."]
    with sqlite3.connect(store.path) as db:
        statuses = dict(db.execute("SELECT id, status FROM jobs"))
    assert statuses == {"q1": "done", "r1": "done", "r2": "failed"}
