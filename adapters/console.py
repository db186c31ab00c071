"""Console adapter: one conversation per session over stdin/stdout; the offline demo and the scripting interface."""

from __future__ import annotations

import asyncio
import getpass
import io
import os
import re
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import BinaryIO, TextIO

from adapters.console_editor import LineEditor
from bot.core import Bot
from bot.messages import Artifact, Author, ConversationKey, Message

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def save_artifact(artifact: Artifact, folder: Path) -> Path:
    """Write an artifact under `folder` with a safe, unique name and return its absolute path."""
    folder.mkdir(parents=True, exist_ok=True)
    name = _UNSAFE_NAME.sub("-", Path(artifact.filename).name).strip("-.") or "artifact"
    path = folder / name
    stem, suffix = path.stem, path.suffix
    counter = 1
    while path.exists():
        path = folder / f"{stem}-{counter}{suffix}"
        counter += 1
    path.write_bytes(artifact.data)
    return path.resolve()


class ConsoleReply:
    """Replies printed to a terminal (streamed as they come) or a pipe (one block per reply)."""

    def __init__(self, out: TextIO, output_dir: Path, interactive: bool, on_closed: Callable[[], None] = lambda: None) -> None:
        self.out = out
        self.output_dir = output_dir
        self.interactive = interactive
        self.on_closed = on_closed
        self.closed = False
        self._streamed = False  # whether an answer was printed that an edit must correct

    def _write(self, text: str) -> None:
        if self.closed:
            return
        try:
            self.out.write(text)
            self.out.flush()
        except BrokenPipeError:
            # The reader went away (`| head`): stop quietly instead of answering into the void.
            self.closed = True
            self.on_closed()

    def _print(self, text: str) -> None:
        self._write(text + "\n")

    async def send(self, text: str) -> None:
        """Print a message."""
        self._print(text)

    async def stream(self, chunks: AsyncIterator[str]) -> str:
        """Print chunks as they arrive on a terminal; print the whole reply at once on a pipe."""
        parts: list[str] = []
        self._streamed = False
        try:
            async for chunk in chunks:
                parts.append(chunk)
                if self.interactive:
                    self._write(chunk)
                    self._streamed = True
        finally:
            if self.interactive and parts:
                self._print("")
        text = "".join(parts)
        if not self.interactive and text:
            self._print(text)
            self._streamed = True
        return text

    async def edit(self, text: str) -> None:
        """A terminal cannot take back a line, so print the correction below it (plainly if nothing was shown)."""
        self._print(f"(edited) {text}" if self._streamed else text)

    async def attach(self, artifact: Artifact, caption: str = "") -> None:
        """Save the file under the output folder and print its full path."""
        path = await asyncio.to_thread(save_artifact, artifact, self.output_dir)
        self._print(f"{caption + ' ' if caption else ''}Saved {artifact.mime_type} to {path}")

    async def progress(self, fraction: float, note: str = "") -> None:
        """Print a progress line."""
        self._print(f"... {round(fraction * 100)}%{' ' + note if note else ''}")

    async def error(self, text: str) -> None:
        """Print a one-line explanation."""
        self._print(text)


class ConsoleAdapter:
    """Reads one message per line; exits at end of input once every reply is out."""

    name = "console"

    def __init__(
        self,
        stdin: BinaryIO | None = None,
        stdout: TextIO | None = None,
        output_dir: str | Path = "atelier-output",
        interactive: bool | None = None,
        editor: LineEditor | None = None,
    ) -> None:
        self.stdin = stdin or sys.stdin.buffer
        self.stdout = stdout or sys.stdout
        self.output_dir = Path(output_dir)
        self.interactive = self.stdin.isatty() if interactive is None else interactive
        # A person at a terminal gets a line editor; pipes and files stay plain line reading.
        on_terminal = stdin is None and stdout is None and self.interactive and self.stdout.isatty()
        self.editor = editor if editor is not None else (LineEditor() if on_terminal else None)
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._stopping = False
        try:
            user = getpass.getuser() or "you"
        except (KeyError, OSError):  # a container user with no passwd entry
            user = "you"
        self.author = Author(id=user, name=user, is_admin=True)
        self.conversation = ConversationKey("console", "local", "console", uuid.uuid4().hex[:12])

    def _read_lines(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[bytes | None]) -> None:
        # A plain thread: stdin may be a file, a pipe or a TTY, and only blocking reads suit all three.
        def hand_over(item: bytes | None) -> bool:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop already closed (Ctrl-C): nobody is left to read this
                return False
            return True

        try:
            for raw in self._lines():
                if not hand_over(raw):
                    return
        finally:
            hand_over(None)

    def _lines(self) -> Iterator[bytes]:
        try:
            fd = self.stdin.fileno()
        except (OSError, ValueError, AttributeError):
            yield from iter(self.stdin.readline, b"")
            return
        # os.read rather than the buffered reader: a thread parked inside the buffered reader
        # holds its lock, and Ctrl-C would then abort the interpreter at shutdown.
        pending = b""
        while chunk := os.read(fd, 65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line + b"\n"
        if pending:
            yield pending

    async def _edited_lines(self, editor: LineEditor) -> None:
        try:
            async for line in editor.lines():
                self._queue.put_nowait(line.encode("utf-8", errors="surrogateescape"))
        finally:
            self._queue.put_nowait(None)

    async def run(self, bot: Bot) -> None:
        """Feed each input line to the bot; at end of input wait for the replies, then return."""
        if self.editor is None:
            await self._serve(bot, self.stdout)
            return
        with self.editor.replies_above(self.stdout) as out:
            reader = asyncio.create_task(self._edited_lines(self.editor), name="console-line-editor")
            try:
                await self._serve(bot, out, reading=False)
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)

    async def _serve(self, bot: Bot, out: TextIO, reading: bool = True) -> None:
        loop = asyncio.get_running_loop()
        queue = self._queue
        if reading:
            threading.Thread(target=self._read_lines, args=(loop, queue), name="atelier-stdin", daemon=True).start()
        reply = ConsoleReply(out, self.output_dir, self.interactive, on_closed=self._output_closed)
        # Jobs left by an earlier console session report to this one.
        bot.attach(self.conversation.platform, lambda job: reply)
        if self.editor is not None:
            editor = self.editor

            async def forget_typed_lines(user_key: str) -> None:
                if user_key == f"{self.conversation.platform}:{self.author.id}":  # this terminal's own person
                    editor.forget()

            bot.forget_listeners.append(forget_typed_lines)
        await bot.start_jobs()
        if self.interactive:
            reply._print("Atelier console. Type a message, /help for commands, Ctrl-D to quit.")
        pending: set[asyncio.Task[None]] = set()
        while not self._stopping:
            raw = await queue.get()
            if raw is None or self._stopping:
                break
            # Bad bytes become lone surrogates, which the core recognises and explains.
            text = raw.decode("utf-8", errors="surrogateescape").rstrip("\r\n")
            message = Message(self.conversation, self.author, text, id=uuid.uuid4().hex[:12], is_dm=True)
            task = asyncio.create_task(bot.handle(message, reply), name=f"console-message-{message.id}")
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.gather(*pending)
        await bot.jobs.drain()

    def _output_closed(self) -> None:
        self._stopping = True
        self._queue.put_nowait(None)
        try:  # later writes, even the interpreter's own flush at exit, must not raise again
            os.dup2(os.open(os.devnull, os.O_WRONLY), self.stdout.fileno())
        except (OSError, ValueError, io.UnsupportedOperation):
            pass

    async def stop(self) -> None:
        """Stop taking input; replies already under way still finish."""
        self._stopping = True
        self._queue.put_nowait(None)
