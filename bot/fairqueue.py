"""A round-robin queue over users: each user's jobs in order, users served in turn."""

from __future__ import annotations

from collections import deque
from typing import Generic, Protocol, TypeVar


class HasUser(Protocol):
    """Anything queued on behalf of a user."""

    user: str


J = TypeVar("J", bound=HasUser)


class FairQueue(Generic[J]):
    """Pops one item per user in rotation, so a burst from one user cannot starve the rest."""

    def __init__(self) -> None:
        self._by_user: dict[str, deque[J]] = {}
        self._ring: deque[str] = deque()

    def __len__(self) -> int:
        return sum(len(items) for items in self._by_user.values())

    def push(self, item: J) -> None:
        """Add an item at the end of its user's line; a new user joins the end of the rotation."""
        line = self._by_user.get(item.user)
        if line is None:
            line = self._by_user[item.user] = deque()
            self._ring.append(item.user)
        line.append(item)

    def pop(self) -> J | None:
        """The next user's oldest item, or None when empty."""
        if not self._ring:
            return None
        user = self._ring.popleft()
        line = self._by_user[user]
        item = line.popleft()
        if line:
            self._ring.append(user)
        else:
            del self._by_user[user]
        return item

    def remove(self, item: J) -> bool:
        """Take an item out of line (a cancel); False when it was not queued."""
        line = self._by_user.get(item.user)
        if line is None or item not in line:
            return False
        line.remove(item)
        if not line:
            del self._by_user[item.user]
            self._ring.remove(item.user)
        return True

    def position(self, item: J) -> int:
        """1-based place in the order items would leave if nothing else arrived; 0 if not queued."""
        line = self._by_user.get(item.user)
        if line is None or item not in line:
            return 0
        depth = list(line).index(item)
        ahead = 0
        for user in self._ring:
            if user == item.user:
                ahead += depth
                continue
            other = len(self._by_user[user])
            # Users before this one in the ring get depth+1 turns first, those after only depth.
            before = self._ring.index(user) < self._ring.index(item.user)
            ahead += min(other, depth + 1 if before else depth)
        return ahead + 1
