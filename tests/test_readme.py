"""Every fenced shell command in the README runs as written from the repository root.

Commands that need a platform token or the model hub are run too, and must refuse in one line
that says what to do; the test suite's own commands and the benchmarks (minutes each) are checked
to start (`--help`, `--collect-only`), and `make test` is what `.ci/run` calls.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
SHELL_BLOCK = re.compile(r"```sh\n(.*?)```", re.S)
# How each kind of command is checked, by the first pattern it matches (the rest run as written).
CHECKS: tuple[tuple[str, str], ...] = (
    (r"^make test\b", "ci"),
    (r"-m pytest\b", "collect"),
    (r"\bbench/\S+\.py\b", "help"),
    (r"-m bot run\b", "refusal"),  # needs DISCORD_TOKEN / SLACK_* and an enabled adapter
    (r"-m bot models download\b", "refusal"),  # needs the model hub
)
# Files the README's commands write outside the repository, removed first so a rerun starts clean.
WRITTEN = ("/tmp/demo.db", "/tmp/atelier-backup.db")


def commands() -> list[str]:
    """Each command line of each ```sh block, its trailing comment dropped."""
    found = []
    for block in SHELL_BLOCK.findall(README.read_text(encoding="utf-8")):
        for line in block.splitlines():
            line = re.sub(r"\s+#\s.*$", "", line).strip()
            if line:
                found.append(line)
    return found


def check_of(command: str) -> str:
    return next((how for pattern, how in CHECKS if re.search(pattern, command)), "run")


def shell(command: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("DISCORD_", "SLACK_"))}
    environment["HF_HUB_OFFLINE"] = "1"  # no hub here: a model download must refuse, not hang
    return subprocess.run(["bash", "-c", command], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env=environment, stdin=subprocess.DEVNULL, check=False)  # fmt: skip


def test_the_readme_has_the_commands_a_newcomer_needs() -> None:
    found = commands()
    assert any(command.startswith("make chat") for command in found) and any("bot run" in command for command in found)
    assert "make test" in (REPO / ".ci" / "run").read_text()  # CI runs exactly the README's test command


@pytest.mark.slow
@pytest.mark.parametrize("command", commands())
def test_each_readme_command_runs_as_written(command: str) -> None:
    how = check_of(command)
    if how == "ci":
        return  # this suite is what it runs (see the test above)
    for path in WRITTEN:
        for suffix in ("", "-wal", "-shm", ".lock"):
            Path(path + suffix).unlink(missing_ok=True)
    if "bot backup" in command:  # a backup needs a store to copy: the console makes one, as a newcomer would have
        assert shell("printf 'hello\\n' | .venv/bin/python -m bot chat").returncode == 0
    script = re.sub(r"(\bbench/\S+\.py)\b.*$", r"\1 --help", command) if how == "help" else command
    if how == "collect":
        script = f"{command} --collect-only -q"
    done = shell(script)
    if how == "refusal":
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("atelier: "), done.stderr
        assert "Traceback" not in done.stderr
        return
    assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    assert "Traceback" not in done.stderr
