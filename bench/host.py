"""The GPU host: idle-connection pressure, and beside `transformers serve` on the same tiny model.

    .venv/bin/python bench/host.py [idle] [--max 10000] [--step 1000] [--nofile 1024]
    .venv/bin/python bench/host.py peer --serving DIR [--load] [--seconds 10] [--tokens 64]

`peer` builds the tests' tiny random Qwen2 offline, serves it with `python -m bot serve` and with
`transformers serve` (FastAPI and uvicorn from DIR, e.g. `pip install --target DIR fastapi uvicorn`),
and drives each with 1, 8 and 32 concurrent streamed chat requests for `--seconds`: requests/s,
tokens/s and the server's CPU-seconds per request, quiet or with a busy loop on every core (`--load`).

`idle` (the default):

Starts `bot.server.Host` (algorithmic music only, so no model is needed) in a child process whose open-file
limit is `--nofile` (1,024 is the common default), opens idle connections in steps of `--step`, and after
each step times a keyed GET /v1/models. Prints JSON: the per-step latencies and the first idle count at
which the keyed request took more than 1 s (null: it never did, up to --max).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import aiohttp

KEY = "bench-host-key-0123456789"
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def start_host(nofile: int) -> tuple[subprocess.Popen[str], int]:
    """The host in a child process with the given open-file limit; returns it and its port."""
    script = textwrap.dedent(f"""
        import asyncio, resource
        resource.setrlimit(resource.RLIMIT_NOFILE, ({nofile}, {nofile}))
        from bot import server
        from bot.backends.algorithmic import AlgorithmicBackend

        async def main():
            listening = await server.Host(None, None, AlgorithmicBackend(), {KEY!r}).listen("127.0.0.1", 0)
            print(listening.port, flush=True)
            await asyncio.Event().wait()

        asyncio.run(main())
    """)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert process.stdout is not None
    return process, int(process.stdout.readline())


async def keyed_request(port: int) -> float:
    """Seconds for one keyed GET /v1/models (inf when it fails or takes over 10 s)."""
    started = time.monotonic()
    try:
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout, headers={"Authorization": f"Bearer {KEY}"}) as session:
            async with session.get(f"http://127.0.0.1:{port}/v1/models") as response:
                await response.read()
                if response.status != 200:
                    return float("inf")
    except (aiohttp.ClientError, TimeoutError):
        return float("inf")
    return time.monotonic() - started


async def run(maximum: int, step: int, nofile: int) -> dict[str, object]:
    """Open idle sockets step by step, timing a keyed request after each step."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, maximum + 1024), hard))
    process, port = start_host(nofile)
    idle: list[socket.socket] = []
    steps, first_slow = [], None
    try:
        for target in range(step, maximum + 1, step):
            while len(idle) < target:
                sock = socket.socket()
                sock.setblocking(False)
                sock.connect_ex(("127.0.0.1", port))
                idle.append(sock)
                if len(idle) % 100 == 0:
                    await asyncio.sleep(0)
            await asyncio.sleep(0.2)
            took = await keyed_request(port)
            steps.append({"idle_opened": target, "keyed_request_s": round(took, 3) if took != float("inf") else None})
            if took > 1.0 and first_slow is None:
                first_slow = target
    finally:
        for sock in idle:
            sock.close()
        process.kill()
        process.wait()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return {"host_open_file_limit": nofile, "max_idle_opened": maximum, "steps": steps,
            "first_idle_count_with_keyed_wait_over_1s": first_slow}  # fmt: skip


def main() -> None:
    """Parse arguments, run, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", choices=["idle", "peer"], default="idle")
    parser.add_argument("--max", type=int, default=10_000)
    parser.add_argument("--step", type=int, default=1_000)
    parser.add_argument("--nofile", type=int, default=1024, help="the host process's open-file limit")
    parser.add_argument("--serving", type=Path, help="a folder holding fastapi and uvicorn, for `transformers serve`")
    parser.add_argument("--load", action="store_true", help="a busy loop on every core while measuring")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    if args.what == "peer":
        from bench.host_peer import compare

        if args.serving is None:
            parser.error("peer needs --serving DIR (pip install --target DIR fastapi uvicorn)")
        result = asyncio.run(compare(args.serving.resolve(), args.load, args.seconds, args.tokens))
    else:
        result = asyncio.run(run(args.max, args.step, args.nofile))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
