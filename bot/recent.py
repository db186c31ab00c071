"""Each user's recent requests per channel: the context that joins a request split over commands.

A chat conversation keeps its turns in the store, but `/imagine` and `/compose` prompts are not
conversation turns, and a slash command outside a thread starts no conversation at all. Without
this, "/imagine my coworker Jane" then "/imagine now make her topless" would be judged apart.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

from bot.messages import ConversationKey

# Long enough to cover a request typed over a few commands, short enough that an old harmless
# prompt does not colour unrelated ones an hour later.
WINDOW_S = 600.0
# Users × channels remembered at once; the least recently active are dropped first.
MAX_PLACES = 10_000
# The joined context keeps only the newest 480 characters, so nothing longer is worth keeping.
KEEP_CHARS = 1000


def place_of(key: ConversationKey) -> str:
    """The channel a message was written in, whatever thread or reply chain it is in."""
    return f"{key.platform}:{key.workspace}:{key.channel}"


class RecentRequests:
    """The last few allowed requests of each user in each channel, newest first, in memory only."""

    def __init__(self, keep: int, window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.keep = keep
        self.window_s = window_s
        self.clock = clock
        self._texts: OrderedDict[tuple[str, str], deque[tuple[float, str]]] = OrderedDict()

    def add(self, user_key: str, key: ConversationKey, text: str) -> None:
        """Remember a request that was allowed."""
        if self.keep <= 0:
            return
        where = (user_key, place_of(key))
        texts = self._texts.pop(where, None) or deque(maxlen=self.keep)
        texts.appendleft((self.clock(), text[-KEEP_CHARS:]))
        self._texts[where] = texts
        self._drop_expired()
        while len(self._texts) > MAX_PLACES:
            self._texts.popitem(last=False)

    def _drop_expired(self) -> None:
        """Forget places whose newest request is older than the window (they are first: least recently added)."""
        since = self.clock() - self.window_s
        while self._texts:
            where, texts = next(iter(self._texts.items()))
            if texts[0][0] >= since:
                return
            del self._texts[where]

    def get(self, user_key: str, key: ConversationKey) -> list[str]:
        """The user's requests in that channel within the window, newest first."""
        texts = self._texts.get((user_key, place_of(key)))
        if not texts:
            return []
        since = self.clock() - self.window_s
        return [text for at, text in texts if at >= since]

    def __len__(self) -> int:
        """How many user × channel places are remembered."""
        return len(self._texts)

    def forget(self, user_key: str) -> None:
        """Drop everything remembered about a user (/forget-me)."""
        for where in [where for where in self._texts if where[0] == user_key]:
            del self._texts[where]
