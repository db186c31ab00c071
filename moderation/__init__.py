"""Moderation facade: `Moderator.check(text, kind, context) -> Verdict`, run before anything is generated."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Action = Literal["allow", "block"]
Kind = Literal["chat", "image", "music", "output"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """The decision on one request: action, category, real-person target, score and reasons."""

    action: Action
    category: str = "none"
    target: str | None = None
    score: float = 0.0
    reasons: tuple[str, ...] = ()
    message: str = ""

    @property
    def blocked(self) -> bool:
        """True when the request must not be generated."""
        return self.action == "block"


class Moderator:
    """The moderation pipeline's entry point.

    This foundation version only carries the interface; the classifier, person detection and
    policy arrive with the moderation issue. `available` is False when it cannot run, and the
    core then refuses generation rather than generating unchecked.
    """

    name = "pass-through (classifier not installed yet)"

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.available = True

    async def check(self, text: str, kind: Kind, context: Sequence[str] = ()) -> Verdict:
        """Judge `text` (with the user's recent turns as `context`) for `kind` of generation."""
        return Verdict("allow", reasons=("no rules installed",))

    def describe(self) -> str:
        """One line for /status."""
        if not self.enabled:
            return "moderation: disabled in config"
        return f"moderation: {self.name}" if self.available else "moderation: NOT RUNNING (generation refused)"
