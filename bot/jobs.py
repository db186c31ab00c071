"""Scheduler: the embedded job queue — one fair queue per backend kind in this process, slots, per-user caps, cancel."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

from bot.config import JobsSection
from bot.fairqueue import FairQueue
from bot.job_running import MAX_ATTEMPTS, Job, JobKind, JobRunner, JobStatus, QueueFull, ReplyFor, Runner
from bot.messages import ConversationKey
from bot.store import ConversationStore

if TYPE_CHECKING:
    from bot.job_queue import QueueScheduler
    from bot.ports import Reply

__all__ = ["Job", "JobKind", "JobStatus", "QueueFull", "ReplyFor", "Runner", "Scheduler", "scheduler_for"]

log = logging.getLogger(__name__)


class Scheduler(JobRunner):
    """The embedded scheduler: image and music jobs queued fairly in this process, within each backend's slots."""

    def __init__(
        self, store: ConversationStore, config: JobsSection, runners: dict[str, Runner], varies: frozenset[str] = frozenset()
    ) -> None:
        super().__init__(store, config, runners, varies)
        self._queues: dict[str, FairQueue[Job]] = {kind: FairQueue() for kind in runners}
        # One release per enqueued job; a worker takes one, then pops (a cancelled job leaves a spare).
        self._ready: dict[str, asyncio.Semaphore] = {kind: asyncio.Semaphore(0) for kind in runners}
        self._active: dict[str, Job] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._workers: list[asyncio.Task[None]] = []

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self, reply_for: ReplyFor) -> None:
        """Resume jobs left by a previous run, then start the workers.

        A job whose platform has no way to reach its user yet stays in the store for a later start.
        """
        for row in await self.store.unfinished_jobs():
            job = Job.from_row(row)
            reply = reply_for(job)
            if reply is None:
                log.info("job %s waits in the store: no adapter for %s is running", job.id, job.conversation)
                continue
            await self._recover(job, reply)
        for kind in self.runners:
            for slot in range(self.slots(kind)):
                worker = asyncio.create_task(self._work(kind), name=f"jobs-{kind}-slot-{slot}")
                self._workers.append(worker)

    async def _recover(self, job: Job, reply: Reply) -> None:
        self._bind(job, reply)
        if job.kind not in self.runners or (job.status == "running" and job.attempts >= MAX_ATTEMPTS):
            known = job.kind in self.runners
            job.error = "the bot restarted while it was running, twice" if known else f"no {job.kind} generator is available now"
            told = await self._notify(job, "error", f"Your {job.kind} job {job.id} ({job.summary}) failed: {job.error}. Please send it again.")
            await self._record(job, status="failed", error=job.error, finished_at=time.time(), delivery="told" if told is None else "untold")
            self._replies.pop(job.id, None)
            return
        was_running = job.status == "running"
        job.status = "queued"
        await self._record(job, status="queued")
        self._enqueue(job)
        verb = "Retrying" if was_running else "Resuming"
        await self._notify(job, "send", f"{verb} your {job.kind} job {job.id} after a restart ({await self.where(job)}).")
        job.announced.set()

    async def stop(self) -> None:
        """Stop running jobs and the workers; the store keeps them, so they resume at the next start."""
        for job in list(self._active.values()):
            job.stop.set()
            if job.task is not None:
                job.task.cancel()
        for worker in self._workers:
            worker.cancel()
        tasks = [*self._workers, *(job.task for job in self._active.values() if job.task is not None)]
        await asyncio.gather(*tasks, return_exceptions=True)
        self._workers.clear()

    async def drain(self) -> None:
        """Wait until no job is queued or running."""
        await self._idle.wait()

    # --- submitting and inspecting ---------------------------------------------------------

    async def submit(self, kind: JobKind, user: str, conversation: ConversationKey, message_id: str | None,
                     params: dict[str, Any], reply: Reply) -> Job:
        """Accept a job (persisted, and the user told where it stands) or refuse it with the reason."""
        mine = [job.id for job in self._active.values() if job.user == user]
        self._check_room(mine, sum(1 for job in self._active.values() if job.status == "queued"))
        job = Job(secrets.token_hex(4), kind, user, conversation, params, message_id)
        # Counted against the caps from here on, so concurrent submits cannot slip past them.
        self._active[job.id] = job
        self._idle.clear()
        try:
            await self.store.insert_job(job.row())
        except BaseException:
            self._forget_job(job)
            raise
        self._bind(job, reply)
        self._enqueue(job)
        seed = params.get("seed")
        await self._notify(job, "send", f"Queued {kind} job {job.id} ({await self.where(job)}), seed {seed}. /cancel {job.id} to stop it.")
        job.announced.set()
        return job

    def _enqueue(self, job: Job) -> None:
        self._active[job.id] = job
        self._idle.clear()
        self._queues[job.kind].push(job)
        self._ready[job.kind].release()

    def _forget_job(self, job: Job) -> None:
        super()._forget_job(job)
        self._active.pop(job.id, None)
        if not self._active:
            self._idle.set()

    async def position(self, job: Job) -> int:
        """1-based place among the jobs waiting for a free slot; 0 once running or about to start."""
        if job.status != "queued":
            return 0
        running = sum(1 for other in self._active.values() if other.kind == job.kind and other.status == "running")
        return max(0, self._queues[job.kind].position(job) - (self.slots(job.kind) - running))

    async def where(self, job: Job) -> str:
        """Where a job stands, in words: 'position 3' or 'starting now'."""
        position = await self.position(job)
        return f"position {position}" if position else "starting now"

    async def jobs_of(self, user: str | None = None) -> list[Job]:
        """Queued and running jobs, oldest first (all users when `user` is None)."""
        jobs = [job for job in self._active.values() if user is None or job.user == user]
        return sorted(jobs, key=lambda job: job.created_at)

    async def get(self, job_id: str) -> Job | None:
        """A queued or running job by id."""
        return self._active.get(job_id.strip().lower())

    async def cancel(self, job_id: str | None, user: str, is_admin: bool) -> Job:
        """Cancel a queued job at once, or a running one at its backend's next step (within a second)."""
        job = await self._to_cancel(job_id, user, is_admin)
        job.stop.set()
        job.cancel_event.set()
        if job.status == "queued" and self._queues[job.kind].remove(job):
            await self._finish(job, "cancelled")
        return job

    # --- running -------------------------------------------------------------------------

    async def _work(self, kind: str) -> None:
        ready = self._ready[kind]
        queue = self._queues[kind]
        while True:
            await ready.acquire()
            job = queue.pop()
            if job is not None:
                try:
                    await self._run(job)
                except asyncio.CancelledError:
                    raise
                except Exception:  # the worker must outlive any one job
                    log.exception("job %s crashed its worker", job.id)
                    if job.id in self._active:
                        job.error = job.error or f"the {job.kind} generator failed"
                        await self._finish(job, "failed")

    async def _run(self, job: Job) -> None:
        await job.announced.wait()
        if job.cancelled_by is not None:  # cancelled between leaving the queue and starting
            await self._finish(job, "cancelled")
            return
        await self._execute(job)

    async def _claim(self, job: Job) -> bool:
        job.status = "running"
        job.attempts += 1
        await self._record(job, status="running", attempts=job.attempts, started_at=time.time())
        return True


def scheduler_for(
    store: ConversationStore, config: JobsSection, runners: dict[str, Runner], varies: frozenset[str] = frozenset()
) -> Scheduler | QueueScheduler:
    """The embedded scheduler on SQLite; the job queue every process shares on PostgreSQL."""
    if store.engine.shared:
        from bot.job_queue import QueueScheduler  # procrastinate only where PostgreSQL is used

        return QueueScheduler(store, config, runners, varies)
    return Scheduler(store, config, runners, varies)
