"""The console's line editor on a terminal: prompt_toolkit's history and editing, replies kept above the input line."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TextIO

from prompt_toolkit import PromptSession
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.patch_stdout import patch_stdout

PROMPT = "> "


def history_path() -> Path:
    """Where typed lines are remembered between sessions: `$XDG_STATE_HOME/atelier/console_history`."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "atelier" / "console_history"


class LineEditor:
    """Reads lines with editing (arrows, Ctrl-A/E, …) and history (Up, Ctrl-R); Ctrl-C clears the line, Ctrl-D quits."""

    def __init__(self, session: PromptSession[str] | None = None) -> None:
        if session is None:
            # We draw no menus, so the cursor-position query is not needed, and a terminal that
            # does not answer it would be told so in a line that looks like an error.
            os.environ.setdefault("PROMPT_TOOLKIT_NO_CPR", "1")
            path = history_path()
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                history: History = FileHistory(str(path))
            except OSError:  # a read-only home: history for this session only
                history = InMemoryHistory()
            session = PromptSession(history=history)
        self.session = session

    def forget(self) -> None:
        """Drop every remembered line (after /forget-me): the history file, and what Up recalls in this session."""
        history = self.session.history
        fresh: History = InMemoryHistory()
        if isinstance(history, FileHistory):
            # A file that cannot be removed raises: the bot logs that the typed lines were not forgotten.
            Path(history.filename).unlink(missing_ok=True)
            fresh = FileHistory(history.filename)
        self.session.history = fresh
        buffer = self.session.default_buffer
        buffer.history = fresh
        buffer.reset()  # its working copy of the old lines goes too; it reloads from the fresh history

    async def lines(self) -> AsyncIterator[str]:
        """Each line typed, until Ctrl-D (or the end of input)."""
        while True:
            try:
                yield await self.session.prompt_async(PROMPT)
            except KeyboardInterrupt:  # as in a shell: drop what was typed, keep the session
                continue
            except EOFError:
                return

    @contextlib.contextmanager
    def replies_above(self, out: TextIO) -> Iterator[TextIO]:
        """Where replies go while the editor runs: above the input line, never into what is being typed."""
        if out is not sys.stdout:  # a test's own stream: written as is
            yield out
            return
        with patch_stdout():
            # Log lines too go above the input line, not over it: the log handler holds the real stderr.
            handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler) and h.stream is sys.__stderr__]
            for handler in handlers:
                handler.setStream(sys.stderr)
            try:
                yield sys.stdout  # the proxy patch_stdout put in its place
            finally:
                for handler in handlers:
                    handler.setStream(sys.__stderr__)
