"""Moderation facade: `Moderator.check(text, kind, context) -> Verdict`, run before anything is generated."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from moderation.batcher import Batcher
from moderation.classifier import Classifier, describe_probabilities
from moderation.figurative import plain_reading
from moderation.normalize import normalize
from moderation.persons import Target, find_target
from moderation.policy import OUTPUT_REFUSAL, Kind, Policy, judge, minor_sexual, refusal

__all__ = ["Kind", "Moderator", "Policy", "Verdict"]

log = logging.getLogger(__name__)
Action = Literal["allow", "block"]
# How much surer the classifier must be about a request joined with the user's earlier turns: with
# the default threshold that is 0.87. Repeated small talk joined up reads as self-harm up to 0.8
# ("turn 12 about the sea and the stars" × 7), while a harmful request split over messages scores
# near 1 once joined.
CONTEXT_MARGIN = 0.55
# When several readings refuse, the most specific one explains it (a nude of a coworker is ncii, not just sexual).
SEVERITY = {"minors": 0, "ncii": 1, "voice_clone": 2, "deceptive_fake": 3}
# Two words or fewer ("lol", "how?") carry too little meaning for the classifier alone to refuse.
SHORT_WORDS = 2
SHORT_MARGIN = 0.3
# The model reads 128 tokens: the message as a whole is judged on about this many characters.
WINDOW_CHARS = 480
# Past this length a message is also judged sentence by sentence, so one harmful ask cannot hide in
# a long one. Measured (README): splitting from 80 characters catches 3 points more of
# StrongREJECT's long requests but doubles false alarms on several-sentence friendly chat.
SPLIT_ABOVE_CHARS = WINDOW_CHARS
PIECE_CHARS = 200
# A sentence read alone has lost its context, so it must be a surer call than the whole message.
PIECE_MARGIN = 0.1
MAX_PIECES = 48
_SENTENCE_END = re.compile(r"(?<=[.!?;:\n])\s+")


def windows(normalized: str) -> list[str]:
    """The text itself, plus each distinct sentence of it when it is more than a short request."""
    if len(normalized) <= SPLIT_ABOVE_CHARS:
        return [normalized]
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(normalized):
        while len(sentence) > PIECE_CHARS:  # a run-on "sentence": cut at a space
            cut = sentence.rfind(" ", 0, PIECE_CHARS) + 1 or PIECE_CHARS
            pieces.append(sentence[:cut])
            sentence = sentence[cut:]
        if sentence.strip():
            pieces.append(sentence)
    whole = normalized[:WINDOW_CHARS]
    return [whole, *[piece for piece in dict.fromkeys(pieces) if piece != whole][:MAX_PIECES]]


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
    """Normalise → plain reading of idioms → hard rules → real-person detection → classifier → policy.

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
        """Load the model and tune (or read the cached) classifier off the loop; never raises."""
        if not enabled:
            return cls(None, default_policy, server_policies, enabled=False)
        try:
            classifier = await asyncio.to_thread(Classifier.build, model_path, cache_dir, examples)
            await asyncio.to_thread(find_target, "w a r m up the person and word lists")  # not on the first message
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
        """Judge `text` (with the user's recent turns, newest first, as `context`) for `kind` of generation.

        Reading and judging run in a worker thread like the model does: a 4,000-character message
        takes tens of milliseconds of regular expressions, which would stall every other chat.
        """
        if not self.enabled:
            return await asyncio.to_thread(self._rules_only, text, kind, context)
        if self._batcher is None or not self.available:
            raise RuntimeError("moderation is not available")
        policy = self.policy_for(scope)
        normalized, own, candidates = await asyncio.to_thread(self._candidates, text, kind, context, mentions, with_attachment)
        probabilities = await self._batcher.classify([candidate for candidate, _, _ in candidates])
        return await asyncio.to_thread(self._decide, normalized, own, candidates, probabilities, kind, policy, nsfw)

    def _candidates(
        self, text: str, kind: Kind, context: Sequence[str], mentions: Sequence[str], with_attachment: bool
    ) -> tuple[str, Target | None, list[tuple[str, Target | None, float]]]:
        """The normalised request, its own target, and each text to judge: (text, whose person counts, margin)."""
        normalized = normalize(text)
        own = None if kind == "output" else find_target(text, normalized, mentions, with_attachment)
        candidates = [
            (window, own, SHORT_MARGIN if len(window.split()) <= SHORT_WORDS else (0.0 if at == 0 else PIECE_MARGIN))
            for at, window in enumerate(windows(plain_reading(normalized)))
        ]
        if context and kind != "output":
            # A request split over messages is judged as one, newest words kept when it is long.
            joined = plain_reading(normalize(" ".join([*reversed(context), text])))[-WINDOW_CHARS:]
            candidates.append((joined, own or find_target(" ".join(context)), CONTEXT_MARGIN))
        return normalized, own, candidates

    def _decide(
        self,
        normalized: str,
        own: Target | None,
        candidates: Sequence[tuple[str, Target | None, float]],
        probabilities: Sequence[Mapping[str, float]],
        kind: Kind,
        policy: Policy,
        nsfw: bool,
    ) -> Verdict:
        """The verdict: the most specific refusal among the candidates, else an allow with the worst score."""
        findings = []
        for (candidate, target, margin), probs in zip(candidates, probabilities, strict=True):
            finding = judge(candidate, probs, target, kind, policy, nsfw, margin=margin, request=normalized)
            if finding is not None:
                findings.append((SEVERITY.get(finding.category, len(SEVERITY)), finding, target, probs))
        if findings:
            _, finding, target, probs = min(findings, key=lambda entry: entry[0])
            return self._verdict(finding.category, finding.reason, finding.score, target, probs, policy, kind)
        worst = max(probabilities, key=lambda probs: 1.0 - probs.get("none", 1.0))
        score = max(1.0 - worst.get("none", 1.0), 0.0)
        return Verdict("allow", target=str(own) if own else None, score=score, reasons=(describe_probabilities(worst),))

    def _rules_only(self, text: str, kind: Kind, context: Sequence[str]) -> Verdict:
        """With moderation disabled in config: no classifier, but sexual content with minors is still refused."""
        normalized = normalize(text)
        joined = normalize(" ".join([*reversed(context), text])) if context else normalized
        if minor_sexual(normalized) or minor_sexual(joined):
            message = OUTPUT_REFUSAL.format(why="minors") if kind == "output" else refusal("minors", "minors", None)
            return Verdict("block", "minors", score=1.0, reasons=("minors",), message=message)
        return Verdict("allow", reasons=("moderation is disabled in config; only the minors rule ran",))

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
        shown_target = str(target) if target is not None else None
        # Strict mode is the server's own choice and is not undone by its per-category actions.
        if policy.action(category) == "allow" and reason != "strict":
            return Verdict("allow", category, shown_target, score, (*reasons, "allowed by this server's policy"))
        message = refusal(reason, category, target)
        if kind == "output":
            message = OUTPUT_REFUSAL.format(why=category.replace("_", " "))
        return Verdict("block", category, shown_target, score, reasons, message)

    def describe(self) -> str:
        """One line for /status."""
        if not self.enabled:
            return "moderation: disabled in config (only the rule against sexual content with minors runs)"
        if self.classifier is None:
            return f"moderation: NOT RUNNING, so generation is refused ({self.problem or 'model not loaded'})"
        return f"moderation: {self.classifier.encoder.name} classifier, {len(self.classifier.labels)} labels, top layers tuned on our exemplars"

    async def close(self) -> None:
        """Stop the batching worker; later checks are refused as "not available"."""
        self.available = False
        if self._batcher is not None:
            await self._batcher.close()
