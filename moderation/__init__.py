"""Moderation facade: `Moderator.check(text, kind, context) -> Verdict`, run before anything is generated."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from moderation.batcher import Batcher
from moderation.classifier import Classifier, describe_probabilities
from moderation.normalize import normalize
from moderation.persons import Target, find_target
from moderation.policy import OUTPUT_REFUSAL, Kind, Policy, judge, refusal

__all__ = ["Kind", "Moderator", "Policy", "Verdict"]

log = logging.getLogger(__name__)
Action = Literal["allow", "block"]
# How much surer the classifier must be about a request joined with the user's earlier turns.
CONTEXT_MARGIN = 0.15


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
    """Normalise → hard rules → real-person detection → embedding classifier → policy.

    `available` is False when the classifier could not load; the core then refuses generation
    rather than generating unchecked.
    """

    def __init__(
        self,
        classifier: Classifier | None,
        default_policy: Policy | None = None,
        server_policies: Mapping[str, Policy] | None = None,
        enabled: bool = True,
        problem: str = "",
    ) -> None:
        self.enabled = enabled
        self.classifier = classifier
        self.available = classifier is not None
        self.problem = problem
        self.default_policy = default_policy or Policy()
        self.server_policies = dict(server_policies or {})
        self._batcher = Batcher(classifier.classify) if classifier is not None else None

    @classmethod
    async def load(
        cls,
        default_policy: Policy | None = None,
        server_policies: Mapping[str, Policy] | None = None,
        *,
        enabled: bool = True,
        model_path: Path | None = None,
        cache_dir: Path | None = None,
        examples: Mapping[str, Sequence[str]] | None = None,
    ) -> Moderator:
        """Load the model and train (or read the cached) head off the loop; never raises."""
        if not enabled:
            return cls(None, default_policy, server_policies, enabled=False)
        try:
            classifier = await asyncio.to_thread(Classifier.build, model_path, cache_dir, examples)
        except Exception as error:  # any failure means "cannot moderate", which refuses generation
            log.error("moderation could not start, so generation is refused: %s", error)
            return cls(None, default_policy, server_policies, problem=str(error))
        return cls(classifier, default_policy, server_policies)

    def policy_for(self, scope: str | None) -> Policy:
        """The policy of a server/workspace scope, or the default."""
        return self.server_policies.get(scope or "", self.default_policy)

    async def check(
        self,
        text: str,
        kind: Kind,
        context: Sequence[str] = (),
        *,
        scope: str | None = None,
        nsfw: bool = False,
        mentions: Sequence[str] = (),
        with_attachment: bool = False,
    ) -> Verdict:
        """Judge `text` (with the user's recent turns, newest first, as `context`) for `kind` of generation."""
        if self._batcher is None:
            raise RuntimeError("moderation is not available")
        policy = self.policy_for(scope)
        normalized = normalize(text)
        candidates = [normalized]
        if context:
            # A request split over messages is judged as one: oldest turn first, this one last.
            candidates.append(normalize(" ".join([*reversed(context), text])))
        probabilities = await self._batcher.classify(candidates)
        target = None if kind == "output" else find_target(text, normalized, mentions, with_attachment)
        if target is None and context and kind != "output":
            target = find_target(" ".join(context))
        for index, (candidate, probs) in enumerate(zip(candidates, probabilities, strict=True)):
            finding = judge(candidate, probs, target, kind, policy, nsfw, margin=CONTEXT_MARGIN if index else 0.0)
            if finding is not None:
                return self._verdict(finding.category, finding.reason, finding.score, target, probs, policy, kind)
        return Verdict("allow", score=max(1.0 - probabilities[0].get("none", 1.0), 0.0), reasons=(describe_probabilities(probabilities[0]),))

    def _verdict(
        self,
        category: str,
        reason: str,
        score: float,
        target: Target | None,
        probs: Mapping[str, float],
        policy: Policy,
        kind: Kind,
    ) -> Verdict:
        reasons = (reason, describe_probabilities(probs))
        shown_target = str(target) if target is not None and category in ("ncii", "deceptive_fake", "voice_clone") else None
        if policy.action(category) == "allow":
            return Verdict("allow", category, shown_target, score, (*reasons, "allowed by this server's policy"))
        message = refusal(reason, category, target)
        if kind == "output":
            message = OUTPUT_REFUSAL.format(why=category.replace("_", " "))
        return Verdict("block", category, shown_target, score, reasons, message)

    def describe(self) -> str:
        """One line for /status."""
        if not self.enabled:
            return "moderation: disabled in config"
        if self.classifier is None:
            return f"moderation: NOT RUNNING, so generation is refused ({self.problem or 'model not loaded'})"
        return f"moderation: {self.classifier.encoder.name} classifier, {len(self.classifier.head.labels)} labels"

    async def close(self) -> None:
        """Stop the batching worker."""
        if self._batcher is not None:
            await self._batcher.close()
