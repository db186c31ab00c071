"""Moderation facade: `Moderator.check(text, kind, context) -> Verdict`, run before anything is generated."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from moderation.batcher import Batcher
from moderation.normalize import normalize
from moderation.persons import Target, find_target, mask_targets
from moderation.policy import (
    OUTPUT_REFUSAL,
    Finding,
    Kind,
    Policy,
    act_finding,
    asks_nudity_or_voice,
    is_real,
    minor_sexual,
    refusal,
    rule_finding,
)
from moderation.readings import LABELS as ACT_LABELS
from moderation.readings import ActReader, Reading, describe_probabilities

if TYPE_CHECKING:
    from moderation.guard import Guard

__all__ = ["Kind", "Moderator", "Policy", "Step", "Verdict"]

log = logging.getLogger(__name__)
Action = Literal["allow", "block"]
KINDS = ("chat", "image", "music", "output")
# How much surer the classifier must be about a request joined with the user's earlier turns:
# harmless small talk joined up must not add up to a refusal, while a harmful request split over
# messages scores near 1 once joined.
CONTEXT_MARGIN = 0.35
# ...and only when the newest message itself leans harmful: earlier turns can complete a harmful
# request, not turn "ahoy" after "you are a pirate" into one.
CONTEXT_NEEDS_OWN_HARM = 0.15
# When several readings refuse, the most specific one explains it (a nude of a coworker is ncii, not just sexual).
SEVERITY = {"minors": 0, "ncii": 1, "voice_clone": 2, "deceptive_fake": 3}
# Two words or fewer ("lol", "how?") carry too little meaning for the classifier alone to refuse.
SHORT_WORDS = 2
SHORT_MARGIN = 0.3
# The model reads 128 tokens: the message as a whole is judged on about this many characters.
WINDOW_CHARS = 480
# Past this length a message is also judged piece by piece, so one harmful ask cannot hide in a long one.
PIECE_CHARS = 240
# A piece read alone has lost its context, so it must be a surer call than the whole message.
PIECE_MARGIN = 0.15
# Past this many pieces (about 24,000 characters) a message is refused as too long to check, not
# half read: a harmful ask at the end of a long paste must not go unseen.
MAX_PIECES = 100
_SENTENCE_END = re.compile(r"(?<=[.!?;:\n])\s+")


def windows(masked: str) -> list[str]:
    """The text itself, plus pieces of it of about a sentence when it is longer than the model reads."""
    if len(masked) <= WINDOW_CHARS:
        return [masked]
    pieces: list[str] = []
    current = ""
    for sentence in _SENTENCE_END.split(masked):
        while len(sentence) > PIECE_CHARS:  # a run-on "sentence": cut at a space
            cut = sentence.rfind(" ", 0, PIECE_CHARS) + 1 or PIECE_CHARS
            pieces.append(sentence[:cut])
            sentence = sentence[cut:]
        if len(current) + len(sentence) > PIECE_CHARS and current:
            pieces.append(current)
            current = ""
        current = f"{current} {sentence}".strip()
    if current:
        pieces.append(current)
    whole = masked[:WINDOW_CHARS]
    return [whole, *[piece for piece in dict.fromkeys(pieces) if piece != whole]]


@dataclass(frozen=True, slots=True)
class Step:
    """One stage's part in a decision: its name, what it concluded, and why."""

    stage: str
    outcome: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.stage}: {self.outcome}" + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True, slots=True)
class Verdict:
    """The decision on one request: action, category, real-person target, score, reasons, and the trail."""

    action: Action
    category: str = "none"
    target: str | None = None
    score: float = 0.0
    reasons: tuple[str, ...] = ()
    message: str = ""
    stage: str = ""  # the stage that decided
    trail: tuple[Step, ...] = ()

    @property
    def blocked(self) -> bool:
        """True when the request must not be generated."""
        return self.action == "block"


@dataclass(frozen=True, slots=True)
class _Candidate:
    """One text the act classifier reads, whose target counts for it, and how much surer it must be."""

    masked: str
    target: Target | None
    margin: float
    name: str


def _add_examples(model: ActReader, examples: Mapping[str, Sequence[str]]) -> None:
    """Admin examples, masked as requests are, into the model's nearest-example table (off the loop)."""
    model.add_examples({label: [mask_targets(text) for text in texts] for label, texts in examples.items()})


def _warm_up() -> None:
    """Compile the person and word lists now, not on the first user's message (about 0.2 s)."""
    from moderation.persons import fiction

    fiction()
    find_target("w a r m up the person and word lists")
    mask_targets("Warm Up with <@1> and Ada Lovelace")


class Moderator:
    """Normalise → rules that are policy → who it is about → the act, masked → (guard) → policy table.

    `available` is False when the act model could not load; the core then refuses generation
    rather than generating unchecked.
    """

    def __init__(
        self,
        model: ActReader | None,
        default_policy: Policy | None = None,
        server_policies: Mapping[str, Policy] | None = None,
        enabled: bool = True,
        problem: str = "",
        guard: Guard | None = None,
        guard_band: tuple[float, float] = (0.2, 0.8),
    ) -> None:
        self.enabled = enabled
        self.model = model
        self.available = model is not None
        self.problem = problem
        self.default_policy = default_policy or Policy()
        self.server_policies = dict(server_policies or {})
        self.guard = guard
        self.guard_band = guard_band
        self._batcher: Batcher[Reading] | None = Batcher(model.classify) if model is not None else None
        self.starting = False

    @classmethod
    def loading(cls, enabled: bool = True) -> Moderator:
        """A stand-in while the real moderator loads: it refuses everything, saying it is starting."""
        stand_in = cls(None, enabled=enabled, problem="still loading")
        stand_in.starting = True
        return stand_in

    @classmethod
    async def load(
        cls,
        default_policy: Policy | None = None,
        server_policies: Mapping[str, Policy] | None = None,
        *,
        enabled: bool = True,
        model_path: Path | None = None,
        examples: Mapping[str, Sequence[str]] | None = None,
        guard: Guard | None = None,
        guard_band: tuple[float, float] = (0.2, 0.8),
        threads: int | None = None,
    ) -> Moderator:
        """Load the shipped act model off the loop (seconds, no training); never raises."""
        if not enabled:
            return cls(None, default_policy, server_policies, enabled=False)
        try:
            from moderation.serving import ServedActs  # onnxruntime: imported when moderation is loaded, not when configured

            model = await asyncio.to_thread(ServedActs.load, model_path=model_path, threads=threads)
            if examples:
                await asyncio.to_thread(_add_examples, model, examples)
            await asyncio.to_thread(_warm_up)
        except Exception as error:  # any failure means "cannot moderate", which refuses generation
            log.error("moderation could not start, so generation is refused: %s", error)
            return cls(None, default_policy, server_policies, problem=str(error))
        return cls(model, default_policy, server_policies, guard=guard, guard_band=guard_band)

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
        if kind not in KINDS:  # an unknown kind would match no policy row and pass unchecked
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        if not self.enabled:
            return await asyncio.to_thread(self._rules_only, text, kind, context)
        if self._batcher is None or not self.available:
            raise RuntimeError("moderation is not available")
        policy = self.policy_for(scope)
        own, candidates, rule, steps = await asyncio.to_thread(
            self._read, text, kind, context, mentions, with_attachment, policy
        )
        readings = await self._batcher.classify([candidate.masked for candidate in candidates])
        verdict = self._decide(own, candidates, readings, rule, steps, kind, policy, nsfw)
        if self.guard is not None and rule is None and self._guard_wanted(verdict, own, kind):
            verdict = await self._ask_guard(text, verdict, own, kind, policy, nsfw)
        return verdict

    def _read(
        self, text: str, kind: Kind, context: Sequence[str], mentions: Sequence[str], with_attachment: bool, policy: Policy
    ) -> tuple[Target | None, list[_Candidate], Finding | None, list[Step]]:
        """The request's target, the masked texts to classify, any rule's finding, and the trail so far."""
        normalized = normalize(text)
        own = None if kind == "output" else find_target(text, normalized, mentions, with_attachment)
        steps = [Step("target", f"{own.kind} {own}" if own else "nobody real named")]
        rule = rule_finding(normalized, own, kind, policy)
        joined_text = " ".join([*reversed(context), text]) if context and kind != "output" else ""
        joined_target = (own or find_target(" ".join(context))) if joined_text else None
        if rule is None and joined_text and asks_nudity_or_voice(normalized, kind):
            # A request split over messages ("my coworker jane" … "now make her topless") is one request,
            # but only the newest message can make it one: strict mode never reaches back.
            rule = rule_finding(normalize(joined_text), joined_target, kind, replace(policy, strict_public_figures=False))
            own = joined_target if rule is not None else own
        steps.append(Step("rules", f"{rule.reason} → {rule.category}" if rule else "none apply"))
        pieces = windows(mask_targets(text, mentions, normalized))
        if rule is None and len(pieces) > MAX_PIECES + 1:
            rule = Finding("other", "too_long", 0.0, "rule:too_long")
        candidates = [
            _Candidate(window, own, SHORT_MARGIN if len(window.split()) <= SHORT_WORDS else (0.0 if at == 0 else PIECE_MARGIN),
                       "message" if at == 0 else f"piece {at}")
            for at, window in enumerate(pieces[: MAX_PIECES + 1])
        ]  # fmt: skip
        if joined_text:
            candidates.append(_Candidate(mask_targets(joined_text, mentions)[-WINDOW_CHARS:], joined_target, CONTEXT_MARGIN, "with context"))
        return own, candidates, rule, steps

    def _decide(
        self,
        own: Target | None,
        candidates: Sequence[_Candidate],
        readings: Sequence[Reading],
        rule: Finding | None,
        steps: list[Step],
        kind: Kind,
        policy: Policy,
        nsfw: bool,
    ) -> Verdict:
        """The verdict: a rule, else the most specific refusal among the readings, else an allow with the worst score."""
        floor = self.model.evidence_floor if self.model is not None else 0.0
        findings: list[tuple[int, Finding, Target | None, Reading]] = []
        own_harm = readings[0].harm if readings else 0.0
        for candidate, reading in zip(candidates, readings, strict=True):
            finding = act_finding(reading.probabilities, candidate.target, kind, policy, nsfw, candidate.margin)
            if finding is not None and candidate.name == "with context" and own_harm < CONTEXT_NEEDS_OWN_HARM:
                steps.append(Step("acts[with context]", "the newest message alone is harmless, so its context cannot refuse it",
                                  f"{describe_probabilities(reading.probabilities)}; newest message {own_harm:.2f}"))  # fmt: skip
                continue
            familiar = reading.evidence >= floor or reading.admin_example is not None or (finding is not None and finding.category == "minors")
            detail = f"{describe_probabilities(reading.probabilities)}; evidence {reading.evidence:.2f} (floor {floor:.2f})"
            if reading.admin_example is not None:
                detail += f"; matches an admin example: {reading.admin_example[:60]!r}"
            if finding is not None and not familiar:
                steps.append(Step(f"acts[{candidate.name}]", "unfamiliar text, not taken as harmful", detail))
                continue
            steps.append(Step(f"acts[{candidate.name}]", f"{finding.reason} → {finding.category}" if finding else "allowed", detail))
            if finding is not None:
                findings.append((SEVERITY.get(finding.category, len(SEVERITY)), finding, candidate.target, reading))
        if rule is not None:
            return self._verdict(rule, own, "", policy, kind, steps)
        if findings:
            _, finding, target, reading = min(findings, key=lambda entry: entry[0])
            return self._verdict(finding, target, describe_probabilities(reading.probabilities), policy, kind, steps)
        worst = max(readings, key=lambda reading: reading.harm)
        steps.append(Step("policy", "allow"))
        return Verdict(
            "allow", target=str(own) if own else None, score=max(worst.harm, 0.0),
            reasons=(describe_probabilities(worst.probabilities),), stage="acts", trail=tuple(steps),
        )  # fmt: skip

    def _guard_wanted(self, verdict: Verdict, own: Target | None, kind: Kind) -> bool:
        """The guard hears what the fast stage is unsure of, and every picture or song about a real person.

        It may add a refusal, or lift one the fast stage was unsure of; never a confident one, never minors.
        """
        low, high = self.guard_band
        if verdict.blocked and (verdict.score >= high or verdict.category == "minors"):
            return False
        return low <= verdict.score < high or (kind in ("image", "music") and is_real(own))

    async def _ask_guard(self, text: str, verdict: Verdict, own: Target | None, kind: Kind, policy: Policy, nsfw: bool) -> Verdict:
        """The guard model's say on an uncertain request; when it cannot answer, the fast stage's verdict stands."""
        from moderation.guard import GuardError

        assert self.guard is not None
        try:
            said = await self.guard.scan(text, kind)
        except GuardError as error:
            log.warning("the guard model could not judge a request; the fast stage decides: %s", error)
            step = Step("guard", "unavailable, the fast stage decides", str(error))
            return replace(verdict, trail=(*verdict.trail, step))
        steps = [*verdict.trail[:-1]] if verdict.trail else []
        if said.safe:
            steps.append(Step(f"guard[{self.guard.name}]", "safe", said.raw.strip()[:80]))
            steps.append(Step("policy", "allow"))
            return Verdict("allow", target=str(own) if own else None, score=verdict.score, reasons=("the guard model found it safe",),
                           stage="guard", trail=tuple(steps))  # fmt: skip
        known = [category for category in said.categories if category in ACT_LABELS and category != "none"]
        findings = [act_finding({"none": 0.0, act: 1.0}, own, kind, policy, nsfw) for act in known]
        refusals = [found for found in findings if found is not None]
        if refusals:  # every category the guard names is judged; the most specific refusal explains it
            finding = min(refusals, key=lambda found: SEVERITY.get(found.category, len(SEVERITY)))
        elif known:
            finding = None
        else:  # unsafe for a reason of the guard's own (a jailbreak, say), or none given
            finding = Finding("other", "guard", verdict.score, "guard")
        steps.append(Step(f"guard[{self.guard.name}]", f"unsafe: {', '.join(said.categories) or 'unspecified'}", said.raw.strip()[:80]))
        if finding is None:
            steps.append(Step("policy", "allow", "the guard's category needs a real person here"))
            return Verdict("allow", target=str(own) if own else None, score=verdict.score, stage="guard", trail=tuple(steps))
        # The guard's word is not a confident refusal of the user: the fast stage's score stays (cooldowns count by it).
        finding = Finding(finding.category, finding.reason, verdict.score, "guard")
        return self._verdict(finding, own, said.raw.strip()[:80], policy, kind, steps)

    def _rules_only(self, text: str, kind: Kind, context: Sequence[str]) -> Verdict:
        """With moderation disabled in config: no classifier, but sexual content with minors is still refused."""
        normalized = normalize(text)
        joined = normalize(" ".join([*reversed(context), text])) if context else normalized
        if minor_sexual(normalized) or minor_sexual(joined):
            message = OUTPUT_REFUSAL.format(why="minors") if kind == "output" else refusal("minors", "minors", None)
            return Verdict("block", "minors", score=1.0, reasons=("minors",), message=message, stage="rule:minors")
        return Verdict("allow", reasons=("moderation is disabled in config; only the minors rule ran",), stage="disabled")

    def _verdict(self, finding: Finding, target: Target | None, probabilities: str, policy: Policy, kind: Kind, steps: list[Step]) -> Verdict:
        reasons = (finding.reason, probabilities) if probabilities else (finding.reason,)
        shown_target = str(target) if target is not None else None
        # Strict mode is the server's own choice and is not undone by its per-category actions.
        if policy.action(finding.category) == "allow" and finding.reason != "strict":
            steps.append(Step("policy", "allow", f"{finding.category} is allowed by this server's policy"))
            return Verdict("allow", finding.category, shown_target, finding.score, (*reasons, "allowed by this server's policy"),
                           stage=finding.stage, trail=tuple(steps))  # fmt: skip
        message = refusal(finding.reason, finding.category, target)
        if kind == "output":
            message = OUTPUT_REFUSAL.format(why=finding.category.replace("_", " "))
        steps.append(Step("policy", "block", f"{finding.reason} × {'a real person' if is_real(target) else 'nobody real'} × {kind} → {finding.category}"))
        return Verdict("block", finding.category, shown_target, finding.score, reasons, message, finding.stage, tuple(steps))

    def describe(self) -> str:
        """One line for /status."""
        if not self.enabled:
            return "moderation: disabled in config (only the rule against sexual content with minors runs)"
        if self.starting:
            return "moderation: loading; generation starts in a few seconds"
        if self.model is None:
            return f"moderation: NOT RUNNING, so generation is refused ({self.problem or 'model not loaded'})"
        guard = f"; guard model {self.guard.name} for uncertain requests" if self.guard is not None else ""
        return f"moderation: {self.model.name} act classifier, {len(self.model.labels)} acts{guard}"

    async def close(self) -> None:
        """Stop the batching worker and the guard; later checks are refused as "not available"."""
        self.available = False
        if self._batcher is not None:
            await self._batcher.close()
        if self.guard is not None:
            await self.guard.close()
