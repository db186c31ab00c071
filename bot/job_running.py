"""What every scheduler shares: the Job, and running one job (timeout, progress, cancel, delivery, its record)."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from bot.ports import JobControls
from bot.backends.media import JobCancelled, Progress
from bot.config import JobsSection
from bot.delivery import delivery_failure
from bot.errors import BotError, UserInputError
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
    # The job's id in the PostgreSQL job queue (None on the embedded scheduler, or before it is queued there).
    queue_id: int | None = None

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
            progress=row.get("progress") or 0.0, note=row.get("note") or "", queue_id=row.get("queue_id"),
        )


class JobRunner:
    """Runs one job at a time per call within its kind's timeout, and tells its user everything; schedulers decide which."""

    def __init__(
        self, store: ConversationStore, config: JobsSection, runners: dict[str, Runner], varies: frozenset[str] = frozenset()
    ) -> None:
        self.store = store
        self.varies = varies  # kinds whose backend can make variations of a result
        self.config = config
        self.runners = runners
        self._replies: dict[str, Reply] = {}

    def slots(self, kind: str) -> int:
        """Concurrent jobs allowed for a kind: the backend's capacity."""
        return self.config.image.slots if kind == "image" else self.config.music.slots

    def timeout(self, kind: str) -> float:
        """Seconds a job of this kind may run."""
        return self.config.image.timeout_s if kind == "image" else self.config.music.timeout_s

    def _check_room(self, mine: Sequence[str], queued: int) -> None:
        """Refuse a new job when the user already has their cap (`mine`: their job ids) or the queue is full."""
        if len(mine) >= self.config.per_user_pending:
            raise QueueFull(f"You already have {len(mine)} jobs waiting or running ({', '.join(mine)}); "
                            "wait for one to finish or /cancel one.")  # fmt: skip
        if queued >= self.config.queue_limit:
            raise QueueFull(f"The queue is full ({queued} jobs waiting); please try again in a few minutes.")

    def _bind(self, job: Job, reply: Reply) -> None:
        self._replies[job.id] = reply
        if isinstance(reply, JobControls):
            reply.bind_job(job.id, job.kind, int(job.params.get("n", 1)) if job.kind in self.varies else 0)

    async def start(self, reply_for: ReplyFor) -> None:
        """Resume what a previous run left and start running jobs."""
        raise NotImplementedError

    async def stop(self) -> None:
        """Stop running jobs; what was accepted stays in the store."""
        raise NotImplementedError

    async def drain(self) -> None:
        """Wait until no job is queued or running."""
        raise NotImplementedError

    async def submit(self, kind: JobKind, user: str, conversation: ConversationKey, message_id: str | None,
                     params: dict[str, Any], reply: Reply) -> Job:
        """Accept a job (recorded, its user told where it stands) or refuse it with the reason."""
        raise NotImplementedError

    async def position(self, job: Job) -> int:
        """1-based place among the waiting jobs of its kind; 0 once running."""
        raise NotImplementedError

    async def where(self, job: Job) -> str:
        """Where a job stands, in words."""
        raise NotImplementedError

    async def jobs_of(self, user: str | None = None) -> list[Job]:
        """Queued and running jobs, oldest first (all users when `user` is None)."""
        raise NotImplementedError

    async def get(self, job_id: str) -> Job | None:
        """A queued or running job by id."""
        raise NotImplementedError

    async def cancel(self, job_id: str | None, user: str, is_admin: bool) -> Job:
        """Cancel a queued job at once, or a running one at its backend's next step."""
        raise NotImplementedError

    async def cancel_all(self, user: str) -> None:
        """Cancel every job of a user (before /forget-me deletes them)."""
        for job in await self.jobs_of(user):
            await self.cancel(job.id, user, is_admin=True)

    async def _to_cancel(self, job_id: str | None, user: str, is_admin: bool) -> Job:
        """The job a /cancel means (the user's newest without an id), if they may cancel it; marked as cancelled by them."""
        if job_id is None:
            mine = await self.jobs_of(user)
            if not mine:
                raise UserInputError("You have no queued or running jobs to cancel.")
            job = mine[-1]
        else:
            found = await self.get(job_id)
            if found is None:
                raise UserInputError(f"No job {job_id} is queued or running; /queue lists yours.")
            job = found
        if job.user != user and not is_admin:
            raise UserInputError(f"Job {job.id} is someone else's; only they or an admin can cancel it.")
        job.cancelled_by = user
        return job

    async def _claim(self, job: Job) -> bool:
        """Mark the job running (one more attempt); False when it may not run after all."""
        raise NotImplementedError

    def _forget_job(self, job: Job) -> None:
        """The job has ended; drop what the scheduler keeps about it."""
        self._replies.pop(job.id, None)

    def _progress_seen(self, job: Job) -> None:
        """A progress report arrived (a scheduler shared by processes records it for the others)."""

    async def _execute(self, job: Job) -> None:
        """Claim the job, run it within its timeout (stopping it on cancel), then deliver and record the outcome."""
        if not await self._claim(job):
            return
        notices: list[Future[None]] = []
        task = job.task = asyncio.create_task(self.runners[job.kind](job, self._progress(job, notices)), name=f"job-{job.id}")
        waiter = asyncio.create_task(job.cancel_event.wait(), name=f"job-{job.id}-cancel")
        timeout = self.timeout(job.kind)
        try:
            await asyncio.wait({task, waiter}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # the process is stopping: the backend stops too, at its next step
            job.stop.set()
            task.cancel()
            raise
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
            self._progress_seen(job)
            now = time.monotonic()
            reply = self._replies.get(job.id)
            if reply is not None and (now - last[0] >= PROGRESS_INTERVAL_S or last[0] == 0.0):
                last[0] = now
                notices.append(asyncio.run_coroutine_threadsafe(self._safe(reply.progress(fraction, note)), loop))

        return progress

    async def _still_ours(self, job: Job) -> bool:
        """Whether this run may still answer for the job (a shared queue may have given it to another process)."""
        return True

    async def _finish(self, job: Job, status: JobStatus) -> None:
        if not await self._still_ours(job):
            log.warning("%s job %s was taken over by another process; this run's outcome is dropped", job.kind, job.id)
            self._forget_job(job)
            return
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

