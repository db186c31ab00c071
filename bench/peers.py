"""Atelier beside llmcord: the same fake Discord, the same fake model, the same mentions; cost and latency per message.

    .venv/bin/python bench/peers.py --llmcord PATH [--sequential 50] [--concurrent 20] [--load]

PATH is a checkout of jakobdylanc/llmcord (MIT); it is installed into PATH/.bench-venv on first use.
Each bot runs in its own process, talking to tests/fake_discord.py and to a fake OpenAI-compatible
model here that streams 16 chunks, 0.125 s apart. `--load` runs a busy loop on every core during
the measurement, as other work on a real server would. Prints JSON: per bot, CPU-seconds per message
(one after another, and `--concurrent` users at once), first model text visible and full answer (p50),
memory after warm-up, start to IDENTIFY; and Atelier's ratios to llmcord.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# bench/ holds a discord.py of its own: keep the folder off the path so `import discord` finds the package.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from aiohttp import web  # noqa: E402

from bench.stats import percentile  # noqa: E402
from tests.discord_payloads import BOT_ID, CHANNEL_ID, message_payload, user  # noqa: E402
from tests.fake_discord import FakeDiscord  # noqa: E402

WORDS = ["Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot", "Golf", "Hotel", "India", "Juliett", "Kilo", "Lima",
         "Mike", "November", "Oscar", "Papa"]  # fmt: skip
CHUNK_DELAY_S = 0.125
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class FakeModel:
    """An OpenAI-compatible server whose every answer is WORDS, one chunk each, CHUNK_DELAY_S apart."""

    def __init__(self) -> None:
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Listen on a free loopback port."""
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake", "object": "model", "owned_by": "bench"}]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        base = {"id": "c1", "object": "chat.completion.chunk", "created": int(time.time()), "model": "fake"}
        for index, word in enumerate(WORDS):
            await asyncio.sleep(CHUNK_DELAY_S)
            delta = {"role": "assistant", "content": word} if index == 0 else {"content": " " + word}
            await response.write(f"data: {json.dumps({**base, 'choices': [{'index': 0, 'delta': delta, 'finish_reason': None}]})}\n\n".encode())
        done = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        await response.write(f"data: {json.dumps(done)}\n\ndata: [DONE]\n\n".encode())
        await response.write_eof()
        return response


@dataclass
class Answer:
    """When a mention was sent, and when its answer's first and last words became visible."""

    sent: float
    first: float | None = None
    full: float | None = None


@dataclass
class Watch:
    """Reads the fake Discord's calls: which bot message answers which mention, and what it shows."""

    fake: FakeDiscord
    answers: dict[int, Answer] = field(default_factory=dict)
    seen: int = 0

    def update(self) -> None:
        """Fold the calls made since the last look into the answers."""
        for call in self.fake.calls[self.seen:]:
            body = call.body.get("json") or {}
            if not isinstance(body, dict):
                continue
            shown = (body.get("content") or "") + " ".join(e.get("description") or "" for e in body.get("embeds") or [])
            if not shown:
                continue
            parts = call.path.strip("/").split("/")
            if parts[:1] != ["channels"] or parts[2:3] != ["messages"]:
                continue
            if call.method == "POST" and len(parts) == 3:
                asked = int((body.get("message_reference") or {}).get("message_id") or 0)
            elif call.method == "PATCH" and len(parts) == 4:
                stored = self.fake.messages.get(int(parts[3])) or {}
                asked = int((stored.get("message_reference") or {}).get("message_id") or 0)
            else:
                continue
            answer = self.answers.get(asked)
            if answer is None:
                continue
            if answer.first is None and WORDS[0] in shown:
                answer.first = call.at
            if answer.full is None and WORDS[-1] in shown and "⚪" not in shown:
                answer.full = call.at
        self.seen = len(self.fake.calls)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def busy_loops() -> list[subprocess.Popen[bytes]]:
    """A busy loop on every core: the other work a real server shares its CPUs with."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]


def stop(process: subprocess.Popen[bytes], busy: list[subprocess.Popen[bytes]], grace: float = 10) -> None:
    """End the busy loops and the measured server (killed if it does not stop within `grace`)."""
    for spinner in busy:
        spinner.kill()
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()


def rss_mib(pid: int) -> float:
    """Resident memory of a process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def ask(fake: FakeDiscord, watch: Watch, ids: range, users: int, timeout: float = 60) -> list[Answer]:
    """Send one mention per id (from `users` different people, all at once) and wait for every full answer."""
    answers = []
    for number, message_id in enumerate(ids):
        author = user(10_000 + number % users, f"user{number % users}")
        answer = watch.answers[message_id] = Answer(time.monotonic())
        answers.append(answer)
        text = f"<@{BOT_ID}> tell me a story about the sea, number {message_id}"
        payload = message_payload(message_id, text, author, CHANNEL_ID, mentions=[user(BOT_ID, "atelier", bot=True)])
        await fake.dispatch("MESSAGE_CREATE", {**payload, "components": []})  # discord.py reads a missing list as absent
    deadline = time.monotonic() + timeout
    while any(a.full is None for a in answers) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
        watch.update()
    return answers


def launch(kind: str, target: str, fake: FakeDiscord, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """The bot's process, pointed at the fake Discord."""
    python = sys.executable if kind == "atelier" else str(Path(target).parent / ".bench-venv" / "bin" / "python")
    args = ["atelier", "--config", target] if kind == "atelier" else ["script", target]
    environment = {**os.environ, **env, "BENCH_DISCORD_REST": fake.rest_base, "BENCH_DISCORD_GATEWAY": fake.gateway_url}
    log = open(Path(tempfile.gettempdir()) / f"bench-peers-{kind}.log", "wb")  # noqa: SIM115 - the child writes it
    return subprocess.Popen([python, str(ROOT / "bench" / "peer_launch.py"), *args], env=environment, stdout=log, stderr=log)


async def measure(kind: str, target: str, env: dict[str, str], sequential: int, concurrent: int, load: bool,
                  profile: Path | None = None) -> dict[str, Any]:  # fmt: skip
    """Start one bot, warm it up, and measure it (with py-spy sampling it during the sequential part, if asked)."""
    fake = FakeDiscord()
    await fake.start()
    started = time.monotonic()
    process = launch(kind, target, fake, env)
    busy: list[subprocess.Popen[bytes]] = []
    try:
        await asyncio.wait_for(fake.ready.wait(), 120)
        identify_s = time.monotonic() - started
        watch = Watch(fake)
        ready_s = None
        for attempt in range(60):  # warm-up: until a real answer comes (a bot may say it is still starting)
            if (await ask(fake, watch, range(1 + attempt, 2 + attempt), 1, timeout=3))[0].full is not None:
                ready_s = time.monotonic() - started
                break
        await ask(fake, watch, range(90, 91), 1)
        memory = rss_mib(process.pid)
        if load:
            busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
        spy = None
        if profile is not None:
            spy = subprocess.Popen(["py-spy", "record", "--pid", str(process.pid), "--threads", "--idle", "--format", "raw",
                                    "--output", str(profile), "--rate", "200"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
            await asyncio.sleep(1)
        before = cpu_seconds(process.pid)
        one_by_one = [(await ask(fake, watch, range(100 + n, 101 + n), 1))[0] for n in range(sequential)]
        sequential_cpu = (cpu_seconds(process.pid) - before) / sequential
        if spy is not None:
            spy.send_signal(2)
            spy.wait(30)
        before = cpu_seconds(process.pid)
        at_once = await ask(fake, watch, range(10_000, 10_000 + concurrent), concurrent)
        concurrent_cpu = (cpu_seconds(process.pid) - before) / concurrent
    finally:
        stop(process, busy)
        await fake.stop()

    def p50(answers: list[Answer], key: str) -> float | None:
        values = [getattr(a, key) - a.sent for a in answers if getattr(a, key) is not None]
        return round(percentile(values, 50), 3) if values else None

    return {
        "cpu_s_per_message_sequential": round(sequential_cpu, 3), "cpu_s_per_message_concurrent": round(concurrent_cpu, 3),
        "first_text_p50_s": p50(one_by_one, "first"), "full_answer_p50_s_concurrent": p50(at_once, "full"),
        "unanswered": sum(a.full is None for a in one_by_one + at_once), "rss_mib_after_warmup": round(memory),
        "start_to_identify_s": round(identify_s, 2), "start_to_first_answer_s": round(ready_s, 2) if ready_s else None,
    }  # fmt: skip


def install_llmcord(checkout: Path) -> None:
    """A venv of llmcord's own requirements beside its checkout (first use only)."""
    venv = checkout / ".bench-venv"
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "-r", str(checkout / "requirements.txt")], check=True)


def configs(folder: Path, model_url: str, llmcord: Path) -> tuple[Path, Path]:
    """Atelier's config (the shipped one, its text model swapped for the fake) and llmcord's config."""
    import yaml

    shipped = yaml.safe_load((ROOT / "config.yaml").read_text())
    shipped["bot"]["db"] = str(folder / "bench.db")
    shipped["adapters"]["discord"]["enabled"] = True
    shipped["backends"]["text"] = {"type": "openai", "base_url": model_url, "model": "fake"}
    atelier = folder / "atelier.yaml"
    atelier.write_text(yaml.safe_dump(shipped))
    peer = yaml.safe_load((llmcord / "config.yaml").read_text())
    peer.update({"bot_token": "bench-token", "client_id": str(BOT_ID), "providers": {"bench": {"base_url": model_url}},
                 "models": {"bench/fake": None}})  # fmt: skip
    peer.pop("bot_token_env", None)
    peer.pop("client_id_env", None)
    (llmcord / "config.yaml.bench").write_text(yaml.safe_dump(peer))
    return atelier, llmcord / "config.yaml.bench"


async def run(llmcord: Path, sequential: int, concurrent: int, load: bool, profile: Path | None = None) -> dict[str, Any]:
    """Both bots, one after the other, against the same fakes."""
    install_llmcord(llmcord)
    model = FakeModel()
    await model.start()
    url = f"http://127.0.0.1:{model.port}/v1"
    results: dict[str, Any] = {"load": "busy loop on every core" if load else "quiet", "sequential": sequential, "concurrent": concurrent}
    with tempfile.TemporaryDirectory() as folder:
        atelier_config, peer_config = configs(Path(folder), url, llmcord)
        original = llmcord / "config.yaml"
        saved = original.read_bytes()
        try:
            original.write_bytes(peer_config.read_bytes())  # llmcord reads ./config.yaml, and re-reads it per message
            results["llmcord"] = await measure("llmcord", str(llmcord / "llmcord.py"), {}, sequential, concurrent, load)
        finally:
            original.write_bytes(saved)
        results["atelier"] = await measure("atelier", str(atelier_config), {"DISCORD_TOKEN": "bench-token"}, sequential, concurrent,
                                           load, profile)  # fmt: skip
    await model.stop()
    ours, theirs = results["atelier"], results["llmcord"]
    results["ratios"] = {key: round(ours[key] / theirs[key], 2) for key in ours
                         if isinstance(ours[key], float | int) and isinstance(theirs.get(key), float | int) and theirs[key]}  # fmt: skip
    return results


def main() -> None:
    """Parse arguments, run, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llmcord", type=Path, required=True, help="a checkout of jakobdylanc/llmcord")
    parser.add_argument("--sequential", type=int, default=50)
    parser.add_argument("--concurrent", type=int, default=20)
    parser.add_argument("--load", action="store_true", help="a busy loop on every core while measuring")
    parser.add_argument("--profile", type=Path, help="write a py-spy profile (raw stacks) of Atelier's sequential part here")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.llmcord.resolve(), args.sequential, args.concurrent, args.load, args.profile)), indent=2))


if __name__ == "__main__":
    main()
