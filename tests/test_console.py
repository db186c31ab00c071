"""`python -m bot chat` as a user or a script drives it: replies, bad input, files, clean exit."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.console import ConsoleAdapter, ConsoleReply
from bot.core import Bot
from bot.errors import RequestRefused
from bot.messages import Artifact

CONFIG = """
bot: {{db: {db}, output_dir: {out}}}
backends: {{text: {{type: markov}}}}
"""


def run_chat(tmp_path: Path, stdin: bytes, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(db=tmp_path / "unused.db", out=tmp_path / "out"))
    return subprocess.run(
        [sys.executable, "-m", "bot", "chat", "--config", str(config), "--db", str(tmp_path / "chat.db")],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        cwd=tmp_path,
    )


def test_piped_messages_each_get_a_reply_and_eof_exits_zero(tmp_path: Path) -> None:
    result = run_chat(tmp_path, b"hello\ntell me about jazz\nwhat a lovely sunset\n")
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 3 and all(line.strip() for line in lines)
    assert (tmp_path / "chat.db").exists() and not (tmp_path / "unused.db").exists()


def test_every_bad_input_gets_one_line_and_the_bot_keeps_going(tmp_path: Path) -> None:
    bad = [
        b"",  # empty line
        b"x" * 100_000,
        b"\x00\x07\x1b",
        b"caf\xe9 \xff\xfe",  # Latin-1 bytes: not UTF-8
        b"/teleport",
        b"/persona",
        b"/reset now",
        b"hello after all that",
    ]
    result = run_chat(tmp_path, b"\n".join(bad) + b"\n")
    out, err = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == 0
    assert "Traceback" not in out + err
    lines = out.splitlines()
    assert lines[:7] == [
        "That message was empty; type something to chat, or /help for the commands.",
        "That message is 100,000 characters long; the limit is 4,000. Shorten it or split it up.",
        "That message had only control characters; type some text, or /help for the commands.",
        "That message is not valid UTF-8 text; check your terminal's encoding and send it again.",
        "Unknown command /teleport; type /help to see the commands.",
        "The persona here is the default; set one with /persona <description>, e.g. /persona You are a pirate.",
        "/reset takes no arguments; usage: /reset",
    ]
    assert len(lines) == 8 and lines[7].strip()


def test_pending_replies_are_printed_before_exit(tmp_path: Path) -> None:
    messages = [f"message number {i} about music" for i in range(20)]
    result = run_chat(tmp_path, ("\n".join(messages) + "\n").encode())
    assert result.returncode == 0
    assert len(result.stdout.decode().splitlines()) == 20


async def test_files_are_saved_under_the_output_folder_and_the_line_names_the_full_path(tmp_path: Path) -> None:
    out = io.StringIO()
    reply = ConsoleReply(out, tmp_path / "out", interactive=False)
    artifact = Artifact(b"\x89PNG fake", "image/png", "../../sneaky name.png")
    await reply.attach(artifact, "seed 42")
    await reply.attach(artifact)
    saved = sorted((tmp_path / "out").iterdir())
    assert [p.name for p in saved] == ["sneaky-name-1.png", "sneaky-name.png"]
    lines = out.getvalue().splitlines()
    assert lines[0] == f"seed 42 Saved image/png to {(tmp_path / 'out' / 'sneaky-name.png').resolve()}"
    assert lines[1].endswith(str((tmp_path / "out" / "sneaky-name-1.png").resolve()))


REFUSED = "I wrote an answer I can't post here (harassment); please ask differently."


@pytest.mark.parametrize(
    ("interactive", "refused_at", "printed"),
    [
        (True, 0, [REFUSED]),  # nothing was shown yet: the refusal alone
        (True, 1, ["Checked words. ", f"(edited) {REFUSED}"]),  # the checked part stays, corrected below
        (False, 1, [REFUSED]),  # a pipe prints whole answers only: the checked part never went out
    ],
)
async def test_an_answer_refused_while_streaming_leaves_only_what_was_checked(
    tmp_path: Path, interactive: bool, refused_at: int, printed: list[str]
) -> None:
    async def answer() -> AsyncIterator[str]:
        for index, piece in enumerate(["Checked words. ", "More checked words."]):
            if index == refused_at:
                raise RequestRefused(REFUSED)
            yield piece

    out = io.StringIO()
    reply = ConsoleReply(out, tmp_path / "out", interactive=interactive)
    with pytest.raises(RequestRefused):
        await reply.stream(answer())
    await reply.edit(REFUSED)
    assert out.getvalue().splitlines() == printed


async def test_interactive_console_streams_and_greets(markov_bot: Bot, tmp_path: Path) -> None:
    out = io.StringIO()
    console = ConsoleAdapter(io.BytesIO(b"hello\n/help\n"), out, tmp_path / "out", interactive=True)
    await console.run(markov_bot)
    text = out.getvalue()
    assert text.startswith("Atelier console. Type a message, /help for commands, Ctrl-D to quit.\n")
    assert "/forget-me" in text


def test_ctrl_c_exits_quietly(tmp_path: Path) -> None:
    import signal
    import time

    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(db=tmp_path / "c.db", out=tmp_path / "out"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "chat", "--config", str(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        # As in a terminal: a test run started in the background (`cmd &`) ignores Ctrl-C, and a
        # child would inherit that and rightly keep ignoring it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(b"hello\n")
    proc.stdin.flush()
    answer = proc.stdout.readline()  # answered, and now waiting for more input
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert answer, f"the chat ended before answering: {err.decode(errors='replace')[-2000:]}"
    assert proc.returncode == 130, f"answer {answer!r}; stderr: {err.decode(errors='replace')[-2000:]}"
    assert b"Traceback" not in err and b"Fatal" not in err


def test_a_closed_output_pipe_stops_the_chat_quietly(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(db=tmp_path / "c.db", out=tmp_path / "out"))
    many = b"".join(b"tell me about jazz %d\n" % i for i in range(300))
    # `| head -2`: the reader takes two lines and goes away.
    pipeline = subprocess.run(
        f"{sys.executable} -m bot chat --config {config} 2>{tmp_path / 'err'} | head -2",
        shell=True, input=many, capture_output=True, timeout=60, cwd=tmp_path,
    )
    assert len(pipeline.stdout.decode().splitlines()) == 2
    err = (tmp_path / "err").read_text()
    assert "Traceback" not in err and "BrokenPipe" not in err


async def test_on_a_terminal_the_line_editor_recalls_and_edits_earlier_lines(markov_bot: Bot, tmp_path: Path) -> None:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import InMemoryHistory
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    from adapters.console_editor import LineEditor

    up, left, delete = "\x1b[A", "\x1b[D", "\x1b[3~"
    with create_pipe_input() as keys:
        session: PromptSession[str] = PromptSession(input=keys, output=DummyOutput(), history=InMemoryHistory())
        out = io.StringIO()
        adapter = ConsoleAdapter(io.BytesIO(), out, tmp_path / "out", interactive=False, editor=LineEditor(session))
        running = asyncio.create_task(adapter.run(markov_bot))
        for typed in (
            "/help reset\r",  # typed, then recalled with Up and edited: "reset" becomes "persona"
            up + left * 5 + delete * 5 + "persona\r",
            "/help vary\x03",  # Ctrl-C drops a half-typed line without leaving
            "/help queue\r",
            "\x04",  # Ctrl-D quits
        ):
            keys.send_text(typed)
            await asyncio.sleep(0.3)  # a person's pace: each line reaches its own prompt
        await asyncio.wait_for(running, 20)
    lines = out.getvalue().splitlines()
    assert [line.split()[0] for line in lines] == ["/reset", "/persona", "/queue"], lines


async def test_forget_me_at_the_terminal_also_forgets_the_typed_lines(markov_bot: Bot, tmp_path: Path) -> None:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    from adapters.console_editor import LineEditor

    history = tmp_path / "console_history"
    with create_pipe_input() as keys:
        session: PromptSession[str] = PromptSession(input=keys, output=DummyOutput(), history=FileHistory(str(history)))
        out = io.StringIO()
        adapter = ConsoleAdapter(io.BytesIO(), out, tmp_path / "out", interactive=False, editor=LineEditor(session))
        running = asyncio.create_task(adapter.run(markov_bot))
        keys.send_text("my secret plan is to bake a cake\r")
        await asyncio.sleep(0.3)
        assert "secret plan" in history.read_text()
        keys.send_text("/forget-me\r")
        await asyncio.sleep(0.5)
        keys.send_text("\x1b[A\r")  # Up recalls only what was typed after forgetting
        await asyncio.sleep(0.3)
        keys.send_text("\x04")
        await asyncio.wait_for(running, 20)
    assert "secret plan" not in (history.read_text() if history.exists() else "")
    assert "Done: deleted" in out.getvalue()
    assert "secret plan" not in out.getvalue().split("Done: deleted", 1)[1]
