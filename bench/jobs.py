"""Jobs benchmark: prints JSON.

Scheduler overhead per job (p50/p99) with an instant backend and 1,000 jobs from 50 users, the
submit latency, and the embedded generators' latency: a 512×512 image, 10 s and 30 s of music.

Run: .venv/bin/python bench/jobs.py
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.memory import MemoryReply  # noqa: E402
from bench.stats import pct  # noqa: E402
from bot.backends.algorithmic import make_music  # noqa: E402
from bot.backends.media import ImageRequest, MusicRequest, Progress  # noqa: E402
from bot.backends.procedural import render  # noqa: E402
from bot.config import JobsSection, QueueSection  # noqa: E402
from bot.jobs import Job, Scheduler  # noqa: E402
from bot.messages import Artifact  # noqa: E402
from bot.store import ConversationStore  # noqa: E402


class TimedReply(MemoryReply):
    """Records when each result reached the user."""

    def __init__(self, delivered: dict[str, float], job_id: list[str]) -> None:
        super().__init__()
        self.delivered = delivered
        self.job_id = job_id

    async def attach(self, artifact: Artifact, caption: str = "") -> None:
        """Note the delivery time."""
        self.delivered[self.job_id[0]] = time.perf_counter()


async def bench_scheduler(folder: Path, jobs_total: int = 1000, users: int = 50) -> dict[str, float]:
    store = await ConversationStore.open(folder / "jobs.db")
    started: dict[str, float] = {}
    ended: dict[str, float] = {}
    delivered: dict[str, float] = {}
    order: list[str] = []

    async def instant(job: Job, progress: Progress) -> list[Artifact]:
        started[job.id] = time.perf_counter()
        order.append(job.id)
        progress(1.0, "done")
        ended[job.id] = time.perf_counter()
        return [Artifact(b"x", "image/png", "x.png", {"seed": "1"})]

    config = JobsSection(per_user_pending=100, queue_limit=jobs_total, image=QueueSection(slots=1))
    scheduler = Scheduler(store, config, {"image": instant})
    submits: list[float] = []
    for n in range(jobs_total):
        holder: list[str] = []
        reply = TimedReply(delivered, holder)
        start = time.perf_counter()
        job = await scheduler.submit("image", f"u{n % users}", "bench:w:c:", None, {"prompt": "p", "seed": n}, reply)
        submits.append(time.perf_counter() - start)
        holder.append(job.id)
    start = time.perf_counter()
    await scheduler.start(lambda job: None)
    await scheduler.drain()
    elapsed = time.perf_counter() - start
    await scheduler.stop()
    await store.close()
    # Per job: from the previous result reaching its user to this job's backend call, plus from
    # the backend returning to this result reaching its user: the scheduler's own work.
    overheads = []
    for previous, current in zip(order, order[1:]):
        overheads.append((started[current] - delivered[previous]) + (delivered[current] - ended[current]))
    return {
        "scheduler_jobs": jobs_total,
        "scheduler_users": users,
        "scheduler_overhead_p50_ms": pct(overheads, 50),
        "scheduler_overhead_p99_ms": pct(overheads, 99),
        "scheduler_jobs_per_s": round(jobs_total / elapsed, 1),
        "submit_p50_ms": pct(submits, 50),
        "submit_p99_ms": pct(submits, 99),
    }


def bench_generators(runs: int = 10) -> dict[str, float]:
    quiet = lambda fraction, note: None  # noqa: E731
    render(ImageRequest("warm up", 0, 64, 64), 0, quiet)
    images, music10, music30 = [], [], []
    for seed in range(runs):
        start = time.perf_counter()
        render(ImageRequest("a red fox in the snow at sunset", seed, 512, 512), 0, quiet)
        images.append(time.perf_counter() - start)
        start = time.perf_counter()
        make_music(MusicRequest("epic battle with drums", seed, 10.0), quiet)
        music10.append(time.perf_counter() - start)
        start = time.perf_counter()
        make_music(MusicRequest("8-bit arcade theme", seed, 30.0), quiet)
        music30.append(time.perf_counter() - start)
    return {
        "image_512_p50_ms": pct(images, 50), "image_512_p99_ms": pct(images, 99),
        "music_10s_p50_ms": pct(music10, 50), "music_10s_p99_ms": pct(music10, 99),
        "music_30s_p50_ms": pct(music30, 50), "music_30s_p99_ms": pct(music30, 99),
    }


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        result = await bench_scheduler(Path(tmp))
    result |= bench_generators()
    result["targets"] = {"image_512_ms": "well under 1000", "music_30s_ms": "< 2000"}
    result["met"] = {"image_512": result["image_512_p99_ms"] < 1000, "music_30s": result["music_30s_p99_ms"] < 2000}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    asyncio.run(main())
