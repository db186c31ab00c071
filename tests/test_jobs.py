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


async def left_behind(store: ConversationStore, job_id: str, *, kind: str = "image", prompt: str = "x",
                      conversation: str = "memory:w:c:", status: str = "queued", attempts: int = 0,
                      created_at: float | None = None) -> None:
    """Store a job as a previous run of the bot would have left it."""
    job = Job(job_id, kind, f"memory:{job_id}", conversation, {"prompt": prompt, "seed": 1},  # type: ignore[arg-type]
              status=status, attempts=attempts, created_at=created_at or time.time())  # type: ignore[arg-type]
    await store.insert_job(job.row())


async def until(condition: Any, timeout: float = 10.0) -> None:
    """Poll until `condition()` holds (generous deadline: CI machines are slow and shared)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(0.005)


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
    assert [await jobs.position(j) for j in (a1, a2, a3, b1)] == [0, 1, 3, 2]
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
    assert kinds == ["send", "progress", "attach"]
    assert reply.events[0].text == f"Queued image job {job.id} (starting now), seed 1. /cancel {job.id} to stop it."
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
    assert reply.texts[-1] == f"Cancelled image job {queued.id}."
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
    await until(lambda: running.status == "running" and (running.reported or kind == "silent"))
    started = time.monotonic()
    await jobs.cancel(None, "memory:a", is_admin=False)
    await until(lambda: running.status == "cancelled")
    # Within a second of work on the job's side; the margin is for a loaded CI machine.
    assert time.monotonic() - started <= 1.5
    assert reply.texts[-1] == f"Cancelled image job {running.id}."
    await until(lambda: bool(runners.started) and runners.started[-1] is waiting)  # the slot went to the next job
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
        await left_behind(store, job_id, status=status, attempts=attempts, created_at=now)
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


async def test_a_cancel_right_after_submitting_is_never_lost(store: ConversationStore) -> None:
    runners = Runners()
    jobs = scheduler(store, runners.silent)
    await jobs.start(lambda job: None)
    reply = MemoryReply()
    job = await submit(jobs, "a", reply=reply)
    await jobs.cancel(job.id, "memory:a", is_admin=False)
    await asyncio.wait_for(jobs.drain(), 5)
    await jobs.stop()
    assert job.status == "cancelled" and reply.texts[-1] == f"Cancelled image job {job.id}."


async def test_concurrent_submits_cannot_slip_past_the_cap(store: ConversationStore) -> None:
    runners = Runners()
    runners.gate.clear()
    jobs = scheduler(store, runners.instant, per_user_pending=2)
    results = await asyncio.gather(*(submit(jobs, "a") for _ in range(6)), return_exceptions=True)
    assert sum(isinstance(r, Job) for r in results) == 2
    assert sum(isinstance(r, QueueFull) for r in results) == 4


async def test_stop_ends_running_work_and_leaves_it_for_the_next_start(store: ConversationStore) -> None:
    runners = Runners()
    jobs = scheduler(store, runners.stepping)
    await jobs.start(lambda job: None)
    job = await submit(jobs, "a")
    await until(lambda: job.reported)
    await asyncio.wait_for(jobs.stop(), 5)
    assert job.task is not None and job.task.done()
    with sqlite3.connect(store.path) as db:
        assert db.execute("SELECT status FROM jobs WHERE id = ?", [job.id]).fetchone() == ("running",)


async def test_a_failing_status_write_does_not_strand_the_job(store: ConversationStore) -> None:
    class FlakyStore(ConversationStore):
        async def update_job(self, job_id: str, **fields: Any) -> None:
            raise sqlite3.OperationalError("disk I/O error")

    flaky = await FlakyStore.open(store.path.with_name("flaky.db"))
    runners = Runners()
    jobs = scheduler(flaky, runners.instant)
    await jobs.start(lambda job: None)
    reply = MemoryReply()
    await submit(jobs, "a", reply=reply)
    await asyncio.wait_for(jobs.drain(), 5)
    await jobs.stop()
    await flaky.close()
    assert [e.kind for e in reply.events][-1] == "attach"
    assert await jobs.jobs_of() == []


async def test_progress_never_arrives_after_the_result(store: ConversationStore) -> None:
    class SlowProgressReply(MemoryReply):
        async def progress(self, fraction: float, note: str = "") -> None:
            await asyncio.sleep(0.2)
            await super().progress(fraction, note)

    runners = Runners()
    jobs = scheduler(store, runners.instant)
    await jobs.start(lambda job: None)
    reply = SlowProgressReply()
    await submit(jobs, "a", reply=reply)
    await jobs.drain()
    await jobs.stop()
    assert [e.kind for e in reply.events] == ["send", "progress", "attach"]


async def test_recovered_jobs_of_an_unavailable_kind_fail_with_a_message(store: ConversationStore) -> None:
    await left_behind(store, "v1", kind="video", prompt="a film")
    replies: dict[str, MemoryReply] = {}
    jobs = scheduler(store, Runners().instant)
    await jobs.start(lambda job: replies.setdefault(job.id, MemoryReply()))
    await jobs.stop()
    assert replies["v1"].texts == ["Your video job v1 (a film) failed: no video generator is available now. Please send it again."]


async def test_recovered_jobs_with_no_way_to_reach_the_user_wait_in_the_store(store: ConversationStore) -> None:
    await left_behind(store, "s1", conversation="slack:T1:C1:1.2")
    runners = Runners()
    jobs = scheduler(store, runners.instant)
    await jobs.start(lambda job: None)
    await jobs.drain()
    await jobs.stop()
    assert runners.started == []
    assert [row["id"] for row in await store.unfinished_jobs()] == ["s1"]
