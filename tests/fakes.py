"""Test doubles that are real implementations of our protocols (no mocks of our own code)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from bot.backends.base import TextOptions
from bot.backends.media import ImageRequest, Progress
from bot.messages import Artifact, Turn
from moderation import Kind, Moderator, Verdict


# A long harmless answer for streaming tests. Made-up tokens ("w0 w1 … w29") read to the output check
# as a list of ids or codes, which it may refuse as private data.
STORY = (
    "once upon a time a small fox lived by the river and every morning it ran along the bank to watch the sun "
    "rise over the hills and sing a happy song until the birds woke up and joined in with the fox"
)


class QueuedTextBackend:
    """A TextBackend whose replies are queued by the test; it records every prompt it was given.

    A reply may be a string (streamed word by word), an Exception (raised mid-stream), or an
    asyncio.Event (the stream waits on it before answering "released").
    """

    name = "queued"

    def __init__(self, context_tokens: int = 4096) -> None:
        self.context_tokens = context_tokens
        self.replies: list[str | BaseException | asyncio.Event] = []
        self.prompts: list[list[Turn]] = []
        self.delay = 0.0  # seconds between words, like a model generating

    def queue(self, *replies: str | BaseException | asyncio.Event) -> None:
        """Add replies, used in order."""
        self.replies.extend(replies)

    def count_tokens(self, text: str) -> int:
        """One token per whitespace-separated word."""
        return len(text.split())

    async def stream(self, turns: Sequence[Turn], options: TextOptions) -> AsyncIterator[str]:
        """Yield the next queued reply word by word (or echo the prompt when none is queued)."""
        self.prompts.append(list(turns))
        reply = self.replies.pop(0) if self.replies else f"echo: {turns[-1].text}"
        if isinstance(reply, asyncio.Event):
            await reply.wait()
            reply = "released"
        if isinstance(reply, BaseException):
            yield "partial"
            raise reply
        for index, word in enumerate(reply.split(" ")):
            await asyncio.sleep(self.delay)
            yield word if index == 0 else " " + word

    async def close(self) -> None:
        """Nothing to release."""


Rule = Callable[[str, Kind], Awaitable[Verdict]]


class RuleModerator(Moderator):
    """A Moderator whose verdicts come from the test's rule (for core tests that need a given verdict)."""

    def __init__(self, rule: Rule) -> None:
        super().__init__(None)
        self.available = True
        self.rule = rule

    async def check(self, text: str, kind: Kind, context: Sequence[str] = (), **where: object) -> Verdict:
        """Ask the rule."""
        return await self.rule(text, kind)


class GatedImageBackend:
    """An ImageBackend that keeps reporting progress until the test releases it (so cancel can be tested)."""

    name = "gated"
    supports_variations = False

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()

    async def generate(self, request: ImageRequest, progress: Progress) -> list[Artifact]:
        """Wait for release in a worker thread, reporting progress (which raises once the job is cancelled)."""

        def work() -> list[Artifact]:
            self.started.set()
            while not self.release.wait(0.02):
                progress(0.5, "waiting")
            return [Artifact(b"\x89PNG fake", "image/png", f"gated-{request.seed}.png", {"seed": str(request.seed)})]

        return await asyncio.to_thread(work)

    async def close(self) -> None:
        """Let any waiting job end."""
        self.release.set()
