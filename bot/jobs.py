"""Scheduler: one fair queue per backend kind, slots, per-user caps, progress, cancel, timeouts, persistence."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from bot.ports import JobControls
from bot.backends.media import JobCancelled, Progress
from bot.config import JobsSection
from bot.delivery import delivery_failure
from bot.errors import BotError, UserInputError
from bot.fairqueue import FairQueue
from bot.messages import Artifact, ConversationKey, named_for_job
from bot.store import ConversationStore

if TYPE_CHECKING:
    from bot.ports import Reply

log = logging.getLogger(__name__)

JobKind = Literal["image", "music"]
JobStatus = Literal["queued", "running", "done", "failed", "cancelled"]
Runner = Callable[["Job", Progress], Coroutine[Any, Any, list[Artifact]]]
ReplyFor = Callable[["Job"], "Reply | None"]
# A job that was running when the process died is started at most this many times in all.
MAX_ATTEMPTS = 2
# Progress reaches the user at most this often (the first update always goes out).
PROGRESS_INTERVAL_S = 0.5
# How long a cancelled or timed-out backend gets to stop at its next progress step.
STOP_GRACE_S = 1.0


class QueueFull(BotError):
    """The global queue bound or the user's pending cap was reached."""


@dataclass(eq=False)
class Job:
    """One generation request in the scheduler."""

    id: str
    kind: JobKind
    user: str
    conversation: ConversationKey
    params: dict[str, Any]
    message_id: str | None = None
    status: JobStatus = "queued"
    progress: float = 0.0
    note: str = ""
    result: list[Artifact] = field(default_factory=list)
    error: str | None = None
    attempts: int = 0
    created_at: float = field(default_factory=time.time)
    stop: threading.Event = field(default_factory=threading.Event, repr=False)
    cancel_event: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    # Set once the user has been told the job is queued; no update may overtake that notice.
    announced: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    reported: bool = False
    task: asyncio.Task[list[Artifact]] | None = field(default=None, repr=False)
    cancelled_by: str | None = None

    @property
    def summary(self) -> str:
        """The prompt, shortened for lists."""
        prompt = str(self.params.get("prompt", ""))
        return prompt if len(prompt) <= 40 else prompt[:39] + "…"

    def row(self) -> dict[str, Any]:
        """The job as a jobs-table row."""
        return {
            "id": self.id, "kind": self.kind, "user_id": self.user, "conversation": str(self.conversation),
            "message_id": self.message_id, "params": json.dumps(self.params), "status": self.status,
            "attempts": self.attempts, "error": self.error, "created_at": self.created_at,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Job:
        """Rebuild a job from its stored row."""
        return cls(
            row["id"], row["kind"], row["user_id"], ConversationKey.parse(row["conversation"]), json.loads(row["params"]),
            row["message_id"], row["status"], attempts=row["attempts"], created_at=row["created_at"],
        )


class Scheduler:
    """Runs image and music jobs fairly within each backend's slots; nothing is dropped silently."""

    def __init__(
        self, store: ConversationStore, config: JobsSection, runners: dict[str, Runner], varies: frozenset[str] = frozenset()
    ) -> None:
        self.store = store
        self.varies = varies  # kinds whose backend can make variations of a result
        self.config = config
        self.runners = runners
        self._queues: dict[str, FairQueue[Job]] = {kind: FairQueue() for kind in runners}
        # One release per enqueued job; a worker takes one, then pops (a cancelled job leaves a spare).
        self._ready: dict[str, asyncio.Semaphore] = {kind: asyncio.Semaphore(0) for kind in runners}
        self._active: dict[str, Job] = {}
        self._replies: dict[str, Reply] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._workers: list[asyncio.Task[None]] = []

    def slots(self, kind: str) -> int:
        """Concurrent jobs allowed for a kind: the backend's capacity."""
        return self.config.image.slots if kind == "image" else self.config.music.slots

    def timeout(self, kind: str) -> float:
        """Seconds a job of this kind may run."""
        return self.config.image.timeout_s if kind == "image" else self.config.music.timeout_s

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

    def _bind(self, job: Job, reply: Reply) -> None:
        self._replies[job.id] = reply
        if isinstance(reply, JobControls):
            reply.bind_job(job.id, job.kind, int(job.params.get("n", 1)) if job.kind in self.varies else 0)

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
        await self._notify(job, "send", f"{verb} your {job.kind} job {job.id} after a restart ({self.where(job)}).")
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
        mine = [job for job in self._active.values() if job.user == user]
        if len(mine) >= self.config.per_user_pending:
            ids = ", ".join(job.id for job in mine)
            raise QueueFull(
                f"You already have {len(mine)} jobs waiting or running ({ids}); "
                "wait for one to finish or /cancel one."
            )
        queued = sum(1 for job in self._active.values() if job.status == "queued")
        if queued >= self.config.queue_limit:
            raise QueueFull(f"The queue is full ({queued} jobs waiting); please try again in a few minutes.")
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
        await self._notify(job, "send", f"Queued {kind} job {job.id} ({self.where(job)}), seed {seed}. /cancel {job.id} to stop it.")
        job.announced.set()
        return job

    def _enqueue(self, job: Job) -> None:
        self._active[job.id] = job
        self._idle.clear()
        self._queues[job.kind].push(job)
        self._ready[job.kind].release()

    def _forget_job(self, job: Job) -> None:
        self._active.pop(job.id, None)
        self._replies.pop(job.id, None)
        if not self._active:
            self._idle.set()

    def position(self, job: Job) -> int:
        """1-based place among the jobs waiting for a free slot; 0 once running or about to start."""
        if job.status != "queued":
            return 0
        running = sum(1 for other in self._active.values() if other.kind == job.kind and other.status == "running")
        return max(0, self._queues[job.kind].position(job) - (self.slots(job.kind) - running))

    def where(self, job: Job) -> str:
        """Where a job stands, in words: 'position 3' or 'starting now'."""
        position = self.position(job)
        return f"position {position}" if position else "starting now"

    def jobs_of(self, user: str | None = None) -> list[Job]:
        """Queued and running jobs, oldest first (all users when `user` is None)."""
        jobs = [job for job in self._active.values() if user is None or job.user == user]
        return sorted(jobs, key=lambda job: job.created_at)

    def get(self, job_id: str) -> Job | None:
        """A queued or running job by id."""
        return self._active.get(job_id.strip().lower())

    async def cancel(self, job_id: str | None, user: str, is_admin: bool) -> Job:
        """Cancel a queued job at once, or a running one at its backend's next step (within a second)."""
        if job_id is None:
            mine = self.jobs_of(user)
            if not mine:
                raise UserInputError("You have no queued or running jobs to cancel.")
            job = mine[-1]
        else:
            found = self._active.get(job_id.strip().lower())
            if found is None:
                raise UserInputError(f"No job {job_id} is queued or running; /queue lists yours.")
            job = found
        if job.user != user and not is_admin:
            raise UserInputError(f"Job {job.id} is someone else's; only they or an admin can cancel it.")
        job.cancelled_by = user
        job.stop.set()
        job.cancel_event.set()
        if job.status == "queued" and self._queues[job.kind].remove(job):
            await self._finish(job, "cancelled")
        return job

    async def cancel_all(self, user: str) -> None:
        """Cancel every job of a user (before /forget-me deletes them)."""
        for job in self.jobs_of(user):
            await self.cancel(job.id, user, is_admin=True)

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
        job.status = "running"
        job.attempts += 1
        await self._record(job, status="running", attempts=job.attempts, started_at=time.time())
        notices: list[Future[None]] = []
        task = job.task = asyncio.create_task(self.runners[job.kind](job, self._progress(job, notices)), name=f"job-{job.id}")
        waiter = asyncio.create_task(job.cancel_event.wait(), name=f"job-{job.id}-cancel")
        timeout = self.timeout(job.kind)
        try:
            await asyncio.wait({task, waiter}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        timed_out = not task.done() and not job.cancel_event.is_set()
        if not task.done():
            job.stop.set()  # a backend that reports progress stops at its next step
            if job.reported:
                await asyncio.wait({task}, timeout=STOP_GRACE_S)
            task.cancel()
        try:
            job.result = [named_for_job(artifact, job.id, str(job.params.get("prompt", "")), job.kind) for artifact in await task]
        except (JobCancelled, asyncio.CancelledError):
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # the worker itself is being stopped
        except BotError as error:
            job.error = error.user_message
        except Exception as error:
            log.exception("%s job %s failed", job.kind, job.id)
            job.error = f"the {job.kind} generator failed ({error.__class__.__name__})"
        for notice in notices:
            await asyncio.wrap_future(notice)
        if job.cancelled_by is not None:
            await self._finish(job, "cancelled")
        elif timed_out:
            job.error = f"it took longer than {timeout:g}s"
            await self._finish(job, "failed")
        elif job.error is not None or not job.result:
            job.error = job.error or "the generator returned nothing"
            await self._finish(job, "failed")
        else:
            await self._finish(job, "done")

    def _progress(self, job: Job, notices: list[Future[None]]) -> Progress:
        loop = asyncio.get_running_loop()
        last = [0.0]

        def progress(fraction: float, note: str = "") -> None:
            if job.stop.is_set():
                raise JobCancelled(job.id)
            job.progress, job.note, job.reported = fraction, note, True
            now = time.monotonic()
            reply = self._replies.get(job.id)
            if reply is not None and (now - last[0] >= PROGRESS_INTERVAL_S or last[0] == 0.0):
                last[0] = now
                notices.append(asyncio.run_coroutine_threadsafe(self._safe(reply.progress(fraction, note)), loop))

        return progress

    async def _finish(self, job: Job, status: JobStatus) -> None:
        job.status = status
        # Deliver first, record after: a crash in between leaves the job 'running', so it is retried.
        delivery = "delivered"
        if status == "done":
            failure = None
            for artifact in job.result:
                failure = failure or await self._notify(job, "attach", artifact)
            if failure is not None:  # made but not handed over: the user hears why, and the store says so
                job.status = status = "failed"
                job.error = f"it was made but could not be delivered: {failure}"
                told = await self._notify(job, "error", f"Your {job.kind} job {job.id} was made but could not be delivered "
                                                        f"({failure}). /reroll {job.id} makes it again.")  # fmt: skip
                delivery = "told" if told is None else "untold"
        elif status == "cancelled":
            delivery = "told" if await self._notify(job, "send", f"Cancelled {job.kind} job {job.id}.") is None else "untold"
        else:
            told = await self._notify(job, "error", f"Your {job.kind} job {job.id} failed: {job.error}. Try again, or /status for details.")
            delivery = "told" if told is None else "untold"
        if delivery == "untold":
            log.error("%s job %s ended %s and its user could not be told (%s)", job.kind, job.id, status, job.error or "no error")
        await self._record(job, status=status, error=job.error, finished_at=time.time(), delivery=delivery)
        self._forget_job(job)

    async def _record(self, job: Job, **fields: Any) -> None:
        try:
            await self.store.update_job(job.id, **fields)
        except Exception:  # the user has been answered; a lost status write must not strand the job
            log.exception("could not record job %s as %s", job.id, fields.get("status"))

    async def _notify(self, job: Job, how: str, payload: Any) -> str | None:
        """Tell the user; None when it reached them, else why not (one line)."""
        reply = self._replies.get(job.id)
        if reply is None:
            log.info("no way to tell the user about job %s (%s)", job.id, how)
            return "no way to reach the conversation"
        if how == "attach":
            seed = payload.metadata.get("seed", job.params.get("seed"))
            return await self._safe(reply.attach(payload, f"[{job.id} · seed {seed}]"))
        return await self._safe(getattr(reply, how)(payload))

    @staticmethod
    async def _safe(call: Awaitable[None]) -> str | None:
        try:
            await call
        except Exception as error:
            reason = delivery_failure(error)
            log.warning("could not deliver a job update: %s", reason)
            return reason
        return None

