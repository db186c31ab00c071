"""Two real bot processes on one PostgreSQL: Discord shards split between them, Slack events sent to both, one killed -9."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import discord
import psycopg
import pytest
import yaml
from discord.gateway import DiscordWebSocket

from moderation.serving import ServedActs
from tests.discord_harness import ALICE, ATELIER
from tests.discord_payloads import BOT_ID, CHANNEL_ID, GUILD_ID, SECOND_CHANNEL_ID, SECOND_GUILD_ID, guild_payload, message_payload
from tests.fake_discord import FakeDiscord
from tests.fake_slack import BOT_USER, FakeSlack
from tests.slack_harness import CHANNEL, SECRET, command_form, event_body, free_port, message_event, post_signed

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent


class BotProcess:
    """`python -m bot run` with its own config: one Discord shard of two, Slack over HTTP on its own port."""

    def __init__(self, tmp_path: Path, shard: int, db: str, discord_fake: FakeDiscord, slack_fake: FakeSlack) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/slack/events"
        config = {
            "bot": {"db": db, "output_dir": str(tmp_path / f"out{shard}")},
            "backends": {"text": {"type": "markov", "options": {"seed": 1}}, "image": {"type": "procedural"},
                         "music": {"type": "algorithmic"}},
            "adapters": {
                "discord": {"enabled": True, "api_base_url": discord_fake.rest_base, "gateway_url": discord_fake.gateway_url,
                            "shards": {"count": 2, "ids": [shard]}},
                "slack": {"enabled": True, "mode": "http", "host": "127.0.0.1", "port": self.port,
                          "api_base_url": slack_fake.api_base_url},
            },
            "jobs": {"takeover_after_s": 2},
        }  # fmt: skip
        path = tmp_path / f"config{shard}.yaml"
        path.write_text(yaml.safe_dump(config))
        env = {**os.environ, "DISCORD_TOKEN": "fake-token", "SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": SECRET}
        self.log = tmp_path / f"bot{shard}.log"
        self.process = subprocess.Popen([sys.executable, "-m", "bot", "run", "--config", str(path)], cwd=REPO, env=env,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log.open("w"))  # fmt: skip

    async def stop(self) -> int:
        """SIGTERM, as docker stop sends, and wait without blocking the loop the fakes answer on; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 20
            while self.process.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if self.process.poll() is None:
                self.process.kill()
        return self.process.wait()


async def until(condition: Any, timeout: float, what: str, processes: list[BotProcess] = ()) -> None:  # type: ignore[assignment]
    deadline = time.monotonic() + timeout
    while not await condition():
        for bot in processes:
            assert bot.process.poll() is None, f"a bot process exited: {bot.log.read_text()[-2000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeDiscord, FakeSlack]]:
    discord_fake = FakeDiscord(guilds=[guild_payload(), guild_payload(SECOND_GUILD_ID, SECOND_CHANNEL_ID)])
    slack_fake = FakeSlack()
    await discord_fake.start()
    await slack_fake.start()
    saved = discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    yield discord_fake, slack_fake
    await slack_fake.stop()
    await discord_fake.stop()
    discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = saved  # type: ignore[misc]


async def test_two_processes_share_the_work_and_one_killed_loses_nothing(
    tmp_path: Path, postgres_url: str, fakes: tuple[FakeDiscord, FakeSlack], act_model: ServedActs
) -> None:
    discord_fake, slack_fake = fakes
    bots = [BotProcess(tmp_path, shard, postgres_url, discord_fake, slack_fake) for shard in (0, 1)]
    session = aiohttp.ClientSession()
    try:
        # Ready: both shards connected and, once each process's models are in, its image and music workers registered.
        async def ready() -> bool:
            return len(discord_fake.shards) == 2 and query(postgres_url, "SELECT count(*) FROM procrastinate_workers")[0][0] == 4

        await until(ready, 90, "both processes to be ready", bots)

        # Discord: each server's mention reaches only the process holding its shard, and is answered once.
        for message_id, channel, guild in ((1, CHANNEL_ID, GUILD_ID), (2, SECOND_CHANNEL_ID, SECOND_GUILD_ID)):
            payload = message_payload(message_id, f"<@{BOT_ID}> hello there", ALICE, channel, mentions=[ATELIER], guild_id=guild)
            await discord_fake.dispatch("MESSAGE_CREATE", payload)

        async def both_answered() -> bool:
            return all(m.get("content") not in ("", "…") for m in discord_fake.messages.values()) and len(discord_fake.messages) == 2

        await until(both_answered, 30, "both Discord servers to be answered", bots)
        assert len(discord_fake.posts(CHANNEL_ID)) == 1 and len(discord_fake.posts(SECOND_CHANNEL_ID)) == 1

        # Slack: the same event delivered to both processes (a load balancer's retry) is answered once.
        thread = "1700000000.000100"
        body = json.dumps(event_body(message_event(thread, f"<@{BOT_USER}> tell me about rivers", mention=True), "EvBOTH"))
        statuses = await asyncio.gather(*(post_signed(session, bot.url, body) for bot in bots))
        assert [response.status for response in statuses] == [200, 200]

        async def thread_answered() -> bool:
            return len(slack_fake.in_thread(thread)) >= 1

        await until(thread_answered, 30, "the Slack thread to be answered", bots)
        await asyncio.sleep(1.0)  # time for a second, wrong answer to show up
        assert len(slack_fake.in_thread(thread)) == 1

        # Jobs accepted by the first process; it is killed -9 while running one of them.
        for user in ("UALICE", "UBOB", "UCAROL"):
            form = command_form("/imagine", "a lighthouse at dusk --size 1024x1024 --n 4", slack_fake, user=user)
            assert (await post_signed(session, bots[0].url, form, form=True)).status == 200
        first_pid = bots[0].process.pid

        async def first_accepted_all_and_runs_one() -> bool:
            # Slack's ack comes before the command is handled: all three must be accepted (told "Queued") first.
            accepted = query(postgres_url, "SELECT count(*) FROM jobs")[0][0] == 3
            return accepted and bool(query(postgres_url, f"SELECT 1 FROM jobs WHERE status = 'running' AND runner LIKE '%-{first_pid}'"))

        await until(first_accepted_all_and_runs_one, 60, "the first process to accept every job and run one", bots)
        turns_before = query(postgres_url, "SELECT count(*) FROM messages")[0][0]
        bots[0].process.send_signal(signal.SIGKILL)
        bots[0].process.wait()

        async def all_finished() -> bool:
            rows = query(postgres_url, "SELECT status FROM jobs")
            return len(rows) == 3 and all(status == "done" for (status,) in rows)

        await until(all_finished, 60, "the other process to finish every job", bots[1:])
        uploads = [json.dumps(call.args) for call in slack_fake.named("files.completeUploadExternal")]
        for (job_id,) in query(postgres_url, "SELECT id FROM jobs"):
            # Four pictures each, each posted once: a job run twice would post eight.
            assert sum(job_id in upload for upload in uploads) == 4, f"job {job_id} was not delivered exactly once"
        assert any(attempts == 2 for (attempts,) in query(postgres_url, "SELECT attempts FROM jobs"))  # one was taken over

        # The conversation goes on in the surviving process: the thread is known from the store, no mention needed.
        assert query(postgres_url, "SELECT count(*) FROM messages")[0][0] >= turns_before
        follow_up = event_body(message_event("1700000000.000200", "and the sea?", thread_ts=thread))
        assert (await post_signed(session, bots[1].url, json.dumps(follow_up))).status == 200

        async def follow_up_answered() -> bool:
            return len(slack_fake.in_thread(thread)) >= 2

        await until(follow_up_answered, 30, "the follow-up to be answered by the surviving process", bots[1:])

        # SIGTERM stops the survivor cleanly: exit 0 within seconds, and nothing alarming in its log.
        started = time.monotonic()
        assert await bots[1].stop() == 0
        assert time.monotonic() - started < 10
        log = bots[1].log.read_text()
        assert "Traceback" not in log and " ERROR " not in log, log[-3000:]
    finally:
        await session.close()
        for bot in bots:
            await bot.stop()
