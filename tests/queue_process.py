"""A bot process's job queue on its own, for tests that kill it: `python -m tests.queue_process URL STARTED_FILE`.

It runs image jobs with a runner that marks STARTED_FILE and then works for a minute, so a test can
kill -9 this process in the middle of a job.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from bot.backends.media import Progress
from bot.config import JobsSection
from bot.job_queue import QueueScheduler
from bot.job_running import Job
from bot.messages import Artifact
from bot.store import ConversationStore


async def main(url: str, started: Path) -> None:
    """Serve the queue until killed."""

    async def slow(job: Job, progress: Progress) -> list[Artifact]:
        started.write_text(job.id)
        await asyncio.sleep(60)
        return []

    store = await ConversationStore.open(url)
    jobs = QueueScheduler(store, JobsSection(takeover_after_s=2), {"image": slow})
    await jobs.start(lambda job: None)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2])))
