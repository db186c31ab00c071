"""QueueScheduler: jobs on a PostgreSQL store go through procrastinate, so any bot process may accept a job and any may run it.

Our `jobs` table stays the record of what was accepted and where it stands; procrastinate hands each
job to exactly one worker (row locks, SKIP LOCKED), watches workers' heartbeats, and carries cancel
requests between processes. A job runs only after one process wins `_claim`, a conditional update of
its row, so a job queued twice by a recovery runs once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from typing import TYPE_CHECKING, Any

import procrastinate
from procrastinate.job_context import AbortReason, JobContext
from procrastinate.jobs import Status

from bot.config import JobsSection
from bot.job_running import MAX_ATTEMPTS, Job, JobKind, JobRunner, QueueFull, ReplyFor, Runner
from bot.messages import ConversationKey
from bot.store import ConversationStore
from bot.store.engine import insert
from bot.store.postgres import PostgresEngine

if TYPE_CHECKING:
    from bot.ports import Reply

log = logging.getLogger(__name__)

TASK = "atelier.run_job"
# Advisory lock ids: every process uses the same ones. Submits take turns, so caps hold across processes.
SUBMIT_LOCK = 0x41_54_4A_42
SWEEP_LOCK = 0x41_54_4A_53
# A running job's progress is written for other processes' /queue at most this often.
PROGRESS_WRITE_S = 2.0
DRAIN_POLL_S = 0.2
WORKER_RESTART_S = 5.0
PRUNE_EVERY_S = 3600.0
# A job recorded but not yet in the queue is left to the process that accepted it for this many takeover
# periods (it tells the user first, which a rate-limited platform can hold up), then queued by another.
QUEUEING_GRACE = 5
ACTIVE = "status IN ('queued', 'running')"


def runner_name() -> str:
    """This process in words: host and pid (what `jobs.runner` records)."""
    return f"{socket.gethostname()}-{os.getpid()}"


def queue_name(kind: str) -> str:
    """The procrastinate queue of a kind of job."""
    return f"atelier-{kind}"


class QueueScheduler(JobRunner):
    """Image and music jobs shared by every bot process on one PostgreSQL store."""

    def __init__(
        self, store: ConversationStore, config: JobsSection, runners: dict[str, Runner], varies: frozenset[str] = frozenset()
    ) -> None:
        super().__init__(store, config, runners, varies)
        engine = store.engine
        assert isinstance(engine, PostgresEngine), "the job queue needs a PostgreSQL store"
        self._pool = engine.pool
        self.app = procrastinate.App(connector=procrastinate.PsycopgConnector())
        self.app.task(name=TASK, pass_context=True)(self._task)
        self._running: dict[str, Job] = {}  # jobs running in this process
        self._reply_for: ReplyFor = lambda job: None
        self._tasks: list[asyncio.Task[Any]] = []
        self._written: dict[str, float] = {}
        self._waiting: set[str] = set()  # jobs left for a process with their platform, already logged
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opened = False
        self._stopped = False

    # --- lifecycle -----------------------------------------------------------------------

    async def open(self, reply_for: ReplyFor) -> None:
        """Connect to the queue and take over what stopped processes left, without running jobs here."""
        self._reply_for = reply_for
        self._loop = asyncio.get_running_loop()
        if not self._opened:
            await self.app.open_async(pool=self._pool)
            self._opened = True
        await self._sweep()

    async def start(self, reply_for: ReplyFor) -> None:
        """Open, then run this process's workers (one per kind, its slots wide) and the watch over other processes."""
        try:
            await self.open(reply_for)
        except Exception as error:  # the store is down at start: the watch takes over what is left once it is back
            log.warning("could not check for jobs left by stopped processes yet (%s); retrying in the background", error)
        for kind in self.runners:
            self._tasks.append(asyncio.create_task(self._keep_working(kind), name=f"jobs-{kind}-worker"))
        self._tasks.append(asyncio.create_task(self._watch(), name="jobs-takeover-watch"))

    async def _keep_working(self, kind: str) -> None:
        """Run procrastinate's worker for a kind, and start it again when the database took it down."""
        takeover = self.config.takeover_after_s
        while True:
            try:
                await self.app.run_worker_async(
                    queues=[queue_name(kind)], name=f"atelier-{kind}-{runner_name()}", concurrency=self.slots(kind),
                    wait=True, install_signal_handlers=False, update_heartbeat_interval=takeover / 3,
                    stalled_worker_timeout=takeover, abort_job_polling_interval=1.0, fetch_job_polling_interval=takeover / 3,
                    # On stop, running jobs are interrupted at once and queued again for another process.
                    shutdown_graceful_timeout=0,
                )  # fmt: skip
            except asyncio.CancelledError:
                raise
            except Exception as error:  # a database restart or failover: wait, then serve again
                log.warning("the %s job worker stopped (%s); starting it again in %gs", kind, error, WORKER_RESTART_S)
            await asyncio.sleep(WORKER_RESTART_S)

    async def stop(self) -> None:
        """Stop this process's workers; its running jobs go back to the queue for any process to finish."""
        self._stopped = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._tasks:
            # Whatever this process was running is requeued now rather than after the takeover wait.
            with contextlib.suppress(Exception):
                await self._requeue_stopped()
        self._tasks.clear()
        if self._opened:
            await self.app.close_async()  # the pool is the store's: procrastinate leaves it open
            self._opened = False

    async def drain(self) -> None:
        """Wait until no job is queued or running in any process."""
        while await self.store.count("jobs", ACTIVE):
            await asyncio.sleep(DRAIN_POLL_S)

    # --- submitting and inspecting ---------------------------------------------------------

    async def submit(self, kind: JobKind, user: str, conversation: ConversationKey, message_id: str | None,
                     params: dict[str, Any], reply: Reply) -> Job:
        """Accept a job (recorded, the user told where it stands, then queued) or refuse it with the reason."""
        if self._stopped:  # this process is shutting down: another one (or this one, restarted) takes new work
            raise QueueFull("I'm restarting right now; please send that again in a minute.")
        job = Job(secrets.token_hex(4), kind, user, conversation, params, message_id)
        async with self.store.engine.transaction() as tx:
            await tx.fetchall("SELECT pg_advisory_xact_lock(?)", [SUBMIT_LOCK])
            mine = [row[0] for row in await tx.fetchall(f"SELECT id FROM jobs WHERE user_id = ? AND {ACTIVE} ORDER BY created_at", [user])]
            self._check_room(mine, (await tx.fetchall("SELECT COUNT(*) FROM jobs WHERE status = 'queued'"))[0][0])
            await insert(tx, "jobs", job.row())
        # Fairness: a user's second job waits behind everyone's first (procrastinate serves higher priority first).
        priority = -len(mine)
        self._bind(job, reply)
        ahead = await self._ahead(kind, priority, None)
        where = f"position {ahead + 1}" if ahead else "next in line"
        await self._notify(job, "send", f"Queued {kind} job {job.id} ({where}), seed {params.get('seed')}. /cancel {job.id} to stop it.")
        # Told first, queued second: no progress from another process can overtake the "Queued" notice.
        await self._defer(job, priority)
        return job

    async def _defer(self, job: Job, priority: int) -> None:
        task = self.app.configure_task(TASK, queue=queue_name(job.kind), priority=priority, lock=job.id)
        job.queue_id = await task.defer_async(job_id=job.id)
        await self.store.engine.execute("UPDATE jobs SET queue_id = ? WHERE id = ? AND queue_id IS NULL", [job.queue_id, job.id])

    async def _ahead(self, kind: str, priority: int, queue_id: int | None) -> int:
        """How many waiting jobs of a kind procrastinate would hand out before one of this priority."""
        sql = ("SELECT COUNT(*) FROM procrastinate_jobs WHERE queue_name = ? AND status = 'todo' "
               "AND (priority > ? OR (priority = ? AND id < ?))")  # fmt: skip
        row = await self.store.engine.fetchall(sql, [queue_name(kind), priority, priority, queue_id or 2**62])
        return int(row[0][0])

    async def position(self, job: Job) -> int:
        """1-based place among the jobs of its kind waiting in any process; 0 once running."""
        if job.status != "queued" or job.queue_id is None:
            return 0 if job.status != "queued" else 1
        rows = await self.store.engine.fetchall("SELECT priority FROM procrastinate_jobs WHERE id = ?", [job.queue_id])
        return await self._ahead(job.kind, rows[0][0], job.queue_id) + 1 if rows else 1

    async def where(self, job: Job) -> str:
        """Where a job stands, in words."""
        position = await self.position(job)
        return f"position {position}" if position else "running"

    async def jobs_of(self, user: str | None = None) -> list[Job]:
        """Queued and running jobs of every process, oldest first (all users when `user` is None)."""
        rows = await self.store.engine.fetchdicts(
            f"SELECT * FROM jobs WHERE {ACTIVE}" + (" AND user_id = ?" if user else "") + " ORDER BY created_at",
            [user] if user else [],
        )
        return [self._running.get(row["id"]) or Job.from_row(row) for row in rows]

    async def get(self, job_id: str) -> Job | None:
        """A queued or running job by id, in any process."""
        rows = await self.store.engine.fetchdicts(f"SELECT * FROM jobs WHERE id = ? AND {ACTIVE}", [job_id.strip().lower()])
        return (self._running.get(rows[0]["id"]) or Job.from_row(rows[0])) if rows else None

    async def cancel(self, job_id: str | None, user: str, is_admin: bool) -> Job:
        """Cancel a queued job at once, or a running one (in whichever process runs it) at its next step."""
        job = await self._to_cancel(job_id, user, is_admin)
        stopped = await self.store.engine.execute(
            "UPDATE jobs SET status = 'cancelled', finished_at = ? WHERE id = ? AND status = 'queued'", [time.time(), job.id]
        )
        if stopped:  # it never started: no worker will claim it now
            if job.queue_id is not None:
                await self.app.job_manager.cancel_job_by_id_async(job.queue_id)
            reply = self._replies.get(job.id) or self._reply_for(job)
            if reply is not None:
                self._bind(job, reply)
            told = await self._notify(job, "send", f"Cancelled {job.kind} job {job.id}.")
            await self._record(job, delivery="told" if told is None else "untold")
            self._forget_job(job)
        elif job.id in self._running:
            job.stop.set()
            job.cancel_event.set()
        else:  # running in another process (perhaps claimed a moment ago): procrastinate passes the request on
            current = await self.store.job(job.id)
            queue_id = current.get("queue_id") if current else None
            if queue_id is not None:
                await self.app.job_manager.cancel_job_by_id_async(queue_id, abort=True)
        return job

    # --- running -------------------------------------------------------------------------

    async def _task(self, context: JobContext, job_id: str) -> None:
        """procrastinate's task: run one of our jobs, unless it was cancelled, forgotten or is already running."""
        rows = await self.store.engine.fetchdicts("SELECT * FROM jobs WHERE id = ?", [job_id])
        if not rows or rows[0]["status"] != "queued":
            return
        job = Job.from_row(rows[0])
        job.queue_id = context.job.id
        reply = self._replies.get(job.id) or self._reply_for(job)
        if reply is not None:
            self._bind(job, reply)
        job.announced.set()
        run = asyncio.create_task(self._execute(job), name=f"job-{job.id}-run")
        while True:
            try:
                await asyncio.shield(run)
                return
            except asyncio.CancelledError:
                if context.abort_reason() is AbortReason.USER_REQUEST and not run.done():
                    current = asyncio.current_task()
                    if current is not None:
                        current.uncancel()  # a cancel from another process: stop the job and tell its user, as here
                    job.cancelled_by = job.cancelled_by or "a cancel request"
                    job.stop.set()
                    job.cancel_event.set()
                    continue
                run.cancel()  # this process is stopping: the job goes back to the queue
                await asyncio.gather(run, return_exceptions=True)
                raise

    async def _claim(self, job: Job) -> bool:
        rows = await self.store.engine.fetchall(
            "UPDATE jobs SET status = 'running', attempts = attempts + 1, started_at = ?, queue_id = ?, runner = ? "
            "WHERE id = ? AND status = 'queued' AND (queue_id IS NULL OR queue_id = ?) RETURNING attempts",
            [time.time(), job.queue_id, runner_name(), job.id, job.queue_id],
        )
        if not rows:
            return False
        job.status, job.attempts = "running", int(rows[0][0])
        self._running[job.id] = job
        return True

    async def _still_ours(self, job: Job) -> bool:
        # A run whose process went silent for takeover_after_s was handed to another process: this one keeps quiet.
        try:
            rows = await self.store.engine.fetchall(
                "SELECT 1 FROM jobs WHERE id = ? AND status = 'running' AND queue_id = ?", [job.id, job.queue_id]
            )
        except Exception as error:  # the store is down for a moment: answer the user; the record is guarded anyway
            log.warning("could not check that job %s is still this process's (%s); delivering it", job.id, error)
            return True
        return bool(rows)

    async def _record(self, job: Job, **fields: Any) -> None:
        if job.queue_id is None or fields.get("status") not in ("done", "failed", "cancelled"):
            await super()._record(job, **fields)
            return
        assignments = ", ".join(f'"{name}" = ?' for name in fields)
        try:
            await self.store.engine.execute(
                f"UPDATE jobs SET {assignments} WHERE id = ? AND queue_id = ?", [*fields.values(), job.id, job.queue_id]
            )
        except Exception:  # the user has been answered; the watch settles a lost write (see _sweep)
            log.exception("could not record job %s as %s", job.id, fields.get("status"))

    def _forget_job(self, job: Job) -> None:
        super()._forget_job(job)
        self._running.pop(job.id, None)
        self._written.pop(job.id, None)

    def _progress_seen(self, job: Job) -> None:
        # Called from the backend's thread: the write is handed to the event loop.
        now = time.monotonic()
        if self._loop is None or now - self._written.get(job.id, 0.0) < PROGRESS_WRITE_S:
            return
        self._written[job.id] = now
        write = self.store.engine.execute("UPDATE jobs SET progress = ?, note = ? WHERE id = ?", [job.progress, job.note, job.id])
        asyncio.run_coroutine_threadsafe(write, self._loop)

    # --- taking over from stopped processes ------------------------------------------------

    async def _watch(self) -> None:
        failing = False
        pruned = time.monotonic()
        while True:
            await asyncio.sleep(self.config.takeover_after_s / 3)
            try:
                await self._sweep()
                if time.monotonic() - pruned > PRUNE_EVERY_S:  # the queue's own finished entries, not our records
                    pruned = time.monotonic()
                    await self.app.job_manager.delete_old_jobs(nb_hours=24, include_failed=True, include_cancelled=True)
            except Exception as error:  # the watch outlives the store being down; said once per outage
                if not failing:
                    log.warning("could not check for jobs left by stopped processes (%s); trying again", error)
                failing = True
            else:
                failing = False

    async def _sweep(self) -> None:
        """Requeue (or, after two tries, fail) jobs whose process stopped; queue those accepted but never queued."""
        takeover = self.config.takeover_after_s
        async with self.store.engine.transaction() as tx:  # one sweeper at a time; it acts after the lock is gone
            if not (await tx.fetchall("SELECT pg_try_advisory_xact_lock(?)", [SWEEP_LOCK]))[0][0]:
                return
            stalled = {job.id for job in await self.app.job_manager.get_stalled_jobs(seconds_since_heartbeat=takeover)}
            rows = await tx.fetchdicts(
                f"SELECT j.*, p.status AS queue_status FROM jobs j LEFT JOIN procrastinate_jobs p ON p.id = j.queue_id WHERE j.{ACTIVE}"
            )
        mine = {job.queue_id for job in self._running.values()}
        for row in rows:
            state, queue_id = row.pop("queue_status"), row["queue_id"]
            if state == "todo" or (state == "doing" and queue_id not in stalled) or (queue_id is not None and queue_id in mine):
                continue
            if queue_id is None and time.time() - row["created_at"] < takeover * QUEUEING_GRACE:
                continue  # accepted a moment ago; its process is telling the user, then queueing it
            try:
                if row["status"] == "running" and queue_id is not None and state in (None, "succeeded"):
                    # Its run ended (finished queue entries are pruned after a day); only the last status write was lost.
                    await self.store.engine.execute(
                        "UPDATE jobs SET status = 'done' WHERE id = ? AND status = 'running' AND queue_id = ?", [row["id"], queue_id]
                    )
                    continue
                if state == "doing":  # its worker is silent: close its queue entry so it is not run twice
                    with contextlib.suppress(Exception):  # already closed by its worker or another sweeper
                        await self.app.job_manager.finish_job_by_id_async(queue_id, Status.FAILED, delete_job=False)
                await self._recover(Job.from_row(row))
            except Exception:
                log.exception("could not take over job %s", row["id"])

    async def _recover(self, job: Job) -> None:
        reply = self._replies.get(job.id) or self._reply_for(job)
        if reply is None:  # a process that runs this platform will take it (said once, not every round)
            if job.id not in self._waiting:
                self._waiting.add(job.id)
                log.info("job %s waits in the store: no adapter for %s is running here", job.id, job.conversation)
            return
        # Only if the row is still as the sweep saw it: a claim or another sweeper since then wins.
        seen = "id = ? AND status = ? AND queue_id IS NOT DISTINCT FROM ?"
        if job.status == "running" and job.attempts >= MAX_ATTEMPTS:
            job.error = "the bot restarted while it was running, twice"
            if not await self.store.engine.execute(
                f"UPDATE jobs SET status = 'failed', error = ?, finished_at = ? WHERE {seen}",
                [job.error, time.time(), job.id, job.status, job.queue_id],
            ):
                return
            self._bind(job, reply)
            told = await self._notify(job, "error", f"Your {job.kind} job {job.id} ({job.summary}) failed: {job.error}. Please send it again.")
            await self._record(job, delivery="told" if told is None else "untold")
            self._forget_job(job)
            return
        was_running = job.status == "running"
        if not await self.store.engine.execute(
            f"UPDATE jobs SET status = 'queued', queue_id = NULL WHERE {seen}", [job.id, job.status, job.queue_id]
        ):
            return
        job.status, job.queue_id = "queued", None
        self._bind(job, reply)
        await self._notify(job, "send", f"Retrying your {job.kind} job {job.id}: the bot process running it stopped."
                           if was_running else f"Resuming your {job.kind} job {job.id} after a restart.")  # fmt: skip
        await self._defer(job, priority=0)
        self._forget_job(job)

    async def _requeue_stopped(self) -> None:
        """Right after this process's workers stopped: its jobs that were running are queued again."""
        for job in list(self._running.values()):
            self._forget_job(job)
        await self._sweep()
