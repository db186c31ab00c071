"""Recent requests: per user and channel, newest first, forgotten after the window or on /forget-me."""

from __future__ import annotations

from bot.messages import ConversationKey
from bot.recent import RecentRequests

CHANNEL = ConversationKey("discord", "1", "200", "chain:7")
SAME_CHANNEL_OTHER_THREAD = ConversationKey("discord", "1", "200", "chain:8")
OTHER_CHANNEL = ConversationKey("discord", "1", "300", "")


class Clock:
    """Time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_requests_are_kept_per_user_and_channel_newest_first_and_expire() -> None:
    clock = Clock()
    recent = RecentRequests(keep=2, window_s=600, clock=clock)
    for text in ("first", "second", "third"):
        recent.add("alice", CHANNEL, text)
    recent.add("bob", CHANNEL, "bob's")
    recent.add("alice", OTHER_CHANNEL, "elsewhere")
    assert recent.get("alice", SAME_CHANNEL_OTHER_THREAD) == ["third", "second"]  # any thread of the channel
    assert recent.get("bob", CHANNEL) == ["bob's"]
    clock.now += 601
    assert recent.get("alice", CHANNEL) == []
    recent.add("carol", CHANNEL, "new")
    assert len(recent) == 1  # expired places are dropped, not only hidden


def test_forget_drops_every_channel_of_that_user_only() -> None:
    recent = RecentRequests(keep=3)
    recent.add("alice", CHANNEL, "mine")
    recent.add("alice", OTHER_CHANNEL, "mine too")
    recent.add("bob", CHANNEL, "bob's")
    recent.forget("alice")
    assert recent.get("alice", CHANNEL) == [] and recent.get("alice", OTHER_CHANNEL) == []
    assert recent.get("bob", CHANNEL) == ["bob's"]
    assert RecentRequests(keep=0).get("alice", CHANNEL) == []
