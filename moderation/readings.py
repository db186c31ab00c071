"""What the act classifier says, as plain values: its labels and one reading (no torch, so cheap to import)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

# The harmful acts besides "none". Finer than the policy's categories, because "how to make meth"
# and "how to make a bomb" sit in different corners of the embedding space.
LABELS = (
    "none", "sexual", "minors", "fake_media", "disinfo", "voice", "fraud", "cyber",
    "violence", "weapons", "crime", "harassment", "hate", "privacy", "self_harm",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Reading:
    """The act classifier on one text: calibrated probabilities, evidence, and an admin example it matched."""

    probabilities: dict[str, float]
    evidence: float
    admin_example: str | None = None

    @property
    def harm(self) -> float:
        """The probability of some harmful act."""
        return 1.0 - self.probabilities.get("none", 0.0)


def describe_probabilities(probabilities: Mapping[str, float], top: int = 3) -> str:
    """The top acts as "act 0.91, act 0.05" for reasons and logs."""
    ranked = sorted(probabilities.items(), key=lambda item: -float(item[1]))[:top]
    return ", ".join(f"{label} {float(p):.2f}" for label, p in ranked)


class ActReader(Protocol):
    """What the moderator needs of an act classifier: the served one (`ServedActs`) or torch's (`ActModel`)."""

    @property
    def labels(self) -> tuple[str, ...]:
        """The acts, "none" first."""

    @property
    def name(self) -> str:
        """The encoder's name, for /status."""

    @property
    def evidence_floor(self) -> float:
        """Below this similarity to every harmful training request, a text is unfamiliar."""

    def classify(self, masked_texts: Sequence[str]) -> list[Reading]:
        """A reading per masked text (blocking)."""

    def add_examples(self, examples: Mapping[str, Sequence[str]]) -> None:
        """Admin examples {act: [masked texts]}."""
