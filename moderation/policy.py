"""Policy: act × target × kind → category, as a table (policy.yaml), plus the rules that are policy, not judgement."""

from __future__ import annotations

import bisect
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Literal

import yaml

from moderation.normalize import normalize
from moderation.persons import Target

Action = Literal["allow", "block"]
Kind = Literal["chat", "image", "music", "output"]
CATEGORIES = (
    "ncii", "minors", "sexual", "deceptive_fake", "voice_clone", "fraud", "harassment", "violence_weapons", "self_harm",
    "other",  # a guard model's finding that names none of ours (e.g. a jailbreak)
)  # fmt: skip
TABLE_FILE = Path(__file__).with_name("policy.yaml")
# The probability of "some harmful act" above which the act counts. Chosen on our development split
# (docs/moderation.md); a server may set its own per label.
DEFAULT_THRESHOLD = 0.5
# A reading of minors this clear refuses whatever else the model says (it cannot be allowed by any server).
MINORS_READING = 0.3
# Generated text is judged as content: only a clear finding withdraws an answer the user already asked for.
OUTPUT_THRESHOLD = 0.99
# Who counts as a real person for the table: a member, a known public figure, a described private
# person, or the person in an attached photo. A capitalised name alone may be anyone (or no one).
REAL_TARGETS = frozenset({"member", "public_figure", "private_person", "pictured_person"})

_MINOR = (
    r"child|children|kid|kids|minor|minors|underage|under-age|under 18|preteen|pre-teen|tween|teen|teens|teenage|"
    r"teenager|schoolgirl|schoolboy|school girl|school boy|little girl|little boy|young girl|young boy|toddler|"
    r"infant|loli|lolita|shota|jailbait|(?:[1-9]|1[0-7])[- ]?(?:yo|y/o|years?[- ]old|yrs?[- ]old)|"
    r"grade ?school|middle school(?:er)?|elementary school|year 9|9th grade|8th grade|7th grade"
)
# Unambiguously sexual words; "strip", "explicit", "breasts", "intimate" have everyday senses
# (comic strip, explicit detail, chicken breasts) and are left to the classifier.
_SEXUAL = (
    r"sex|sexual|sexy|sexualized|sexualised|nude|nudes|naked|nudity|porn|porno|pornographic|erotic|erotica|nsfw|"
    r"topless|bottomless|lingerie|undress|undressed|undressing|striptease|strip naked|stripping naked|boobs|tits|"
    r"genitals|penis|vagina|orgasm|aroused|horny|fetish|bdsm|hentai|lewd|onlyfans|seductive|in (?:her|his|their) "
    r"underwear|make out|making out|molest|molesting|grope|groping"
)
_MINOR_WORDS = re.compile(rf"\b(?:{_MINOR})\b")
SEXUAL_WORDS = re.compile(rf"\b(?:{_SEXUAL})\b")
# Teaching about sex is not sexual content ("talk to my teen about sex education").
_SEX_EDUCATION = re.compile(r"\bsex(?:ual)? (?:ed|education|health)\b|\bnaked mole rats?\b")
MINOR_NEARBY_CHARS = 60


def minor_sexual(normalized: str) -> bool:
    """A minor and a sexual word close together: always refused. Linear in the text's length."""
    text = _SEX_EDUCATION.sub(" ", normalized)
    minors = [m.start() for m in _MINOR_WORDS.finditer(text)]
    if not minors:
        return False
    for sexual in SEXUAL_WORDS.finditer(text):
        nearest = bisect.bisect_left(minors, sexual.start())
        neighbours = minors[max(nearest - 1, 0) : nearest + 1]
        if any(abs(sexual.start() - at) <= MINOR_NEARBY_CHARS for at in neighbours):
            return True
    return False


_CLOTHING = re.compile(
    r"\b(?:clothes|clothing|clothed|dressed|dress|shirt|shirts|top|pants|trousers|skirt|bra|underwear|outfit|"
    r"garments?|covered|swimsuit|bikini|fabric|modest|censored|censorship)\b"
)


def removes_clothing(negative: str) -> bool:
    """Whether an image's negative prompt asks to leave the clothes out (a nude picture by other means)."""
    return _CLOTHING.search(normalize(negative)) is not None


VOICE = re.compile(
    r"\b(?:in the voice of|in (?:the )?style of (?:the )?voice|voice of|sung by|sang by|vocals by|vocals from|"
    r"voiced by|narrated by|(?:'s|’s) (?:real )?(?:voice|vocals)|voice clone|clone (?:the |his |her |their |my )?voice|"
    r"cloned voice|imitat\w* (?:the )?voice|mimic\w* (?:the )?voice|deepfake (?:audio|voice)|as if sung by|feat\.|ft\.)"
)
# Intimate wear and poses: of a named or mentioned real person they sexualise them, whatever the model says.
_INTIMATE = re.compile(
    r"\b(?:bikinis?|lingerie|underwear|bra|panties|thong|cleavage|boudoir|see[- ]through|busty|sultry|sensual|"
    r"seductive(?:ly)?|sexy|hot body|bathtub|in the shower|showering|without (?:any )?(?:clothes|clothing)|wet (?:t-)?shirt)\b"
)


REFUSALS: dict[str, str] = {
    "ncii": "I can't make sexual or intimate content of a real person ({target}).",
    "minors": "I can't make anything sexual involving minors.",
    "sexual": "I can't make explicit sexual content here (only in NSFW channels where the server has enabled it).",
    "fake_media": "I can't make realistic fakes of a real person ({target}); a clearly stylised cartoon or painting is fine.",
    "disinfo": "I can't write disinformation or deceptive content meant to pass as real.",
    "voice_clone": "I can't imitate a real person's voice ({target}); describe a style or genre instead, like \"breathy 80s synth-pop vocals\".",
    "strict": "This server doesn't allow generating named real people ({target}); try a fictional or generic person.",
    "fraud": "I can't help with scams, phishing or fraud.",
    "cyber": "I can't help with malware or breaking into systems or accounts.",
    "violence": "I can't help with hurting people or animals.",
    "weapons": "I can't help with weapons or making dangerous substances.",
    "crime": "I can't help with that kind of crime.",
    "harassment": "I can't help target or harass someone.",
    "hate": "I can't write content that demeans people for who they are.",
    "privacy": "I can't help find or expose someone's private information.",
    "guard": "I can't help with that request; the safety check flagged it.",
    "too_long": "That message is too long for me to check at once; please send it in shorter parts.",
    "self_harm": "I can't help with that, but you don't have to face it alone: please reach out to someone you trust or a local crisis line.",
}  # fmt: skip
OUTPUT_REFUSAL = "I wrote an answer I can't post here ({why}); please ask differently."



@dataclass(frozen=True, slots=True)
class Row:
    """One line of the table: an act, whether it needs a real person, the kinds it covers, the category."""

    act: str
    category: str
    person: bool | None = None  # True: only with a real person; False: only without; None: either
    kinds: frozenset[str] = frozenset({"chat", "image", "music", "output"})
    nsfw_ok: bool = False  # allowed in an opted-in NSFW channel


@cache
def table(path: Path = TABLE_FILE) -> tuple[Row, ...]:
    """The policy table, read once: the first row that matches an act decides its category."""
    rows = []
    for entry in yaml.safe_load(path.read_text(encoding="utf-8"))["rows"]:
        kinds = frozenset(entry.pop("kinds", ["chat", "image", "music", "output"]))
        rows.append(Row(kinds=kinds, **entry))
    return tuple(rows)


def category_of(act: str, real_person: bool, kind: Kind, nsfw: bool) -> str | None:
    """The category the table gives an act (None: allowed)."""
    for row in table():
        if row.act != act or kind not in row.kinds:
            continue
        if row.person is not None and row.person != real_person:
            continue
        if row.category == "allow" or (row.nsfw_ok and nsfw):
            return None
        return row.category
    return None


@dataclass(frozen=True)
class Policy:
    """What one server allows: action per category, threshold per label, strict mode, NSFW."""

    actions: Mapping[str, Action] = field(default_factory=dict)
    thresholds: Mapping[str, float] = field(default_factory=dict)
    strict_public_figures: bool = False
    allow_nsfw: bool = False

    def action(self, category: str) -> Action:
        """The configured action for a category; minors is always blocked."""
        if category == "minors":
            return "block"
        return self.actions.get(category, "block")

    def threshold(self, label: str, kind: Kind) -> float:
        """The probability above which a label counts."""
        base = self.thresholds.get(label, DEFAULT_THRESHOLD)
        return max(base, OUTPUT_THRESHOLD) if kind == "output" else base


@dataclass(frozen=True, slots=True)
class Finding:
    """A reason to refuse: the category, the act or rule behind it, its score, and the stage that found it."""

    category: str
    reason: str
    score: float
    stage: str


def refusal(reason: str, category: str, target: Target | None) -> str:
    """The one sentence the user reads."""
    template = REFUSALS.get(reason) or REFUSALS.get(category) or "I can't help with that request."
    return template.format(target=target or "a real person")


def is_real(target: Target | None) -> bool:
    """Whether the table's "real person" applies."""
    return target is not None and target.kind in REAL_TARGETS


def asks_nudity_or_voice(normalized: str, kind: Kind) -> bool:
    """Whether a message itself asks for nudity, intimacy or a voice: only then can earlier turns supply the person."""
    return bool(SEXUAL_WORDS.search(normalized) or _MINOR_WORDS.search(normalized) or (kind != "chat" and _INTIMATE.search(normalized))
                or (kind == "music" and VOICE.search(normalized)))  # fmt: skip


def rule_finding(normalized: str, target: Target | None, kind: Kind, policy: Policy) -> Finding | None:
    """The rules that are policy, not judgement: minors; a real person with nudity or intimate words;
    a real singer's voice in music; strict mode's named people."""
    if minor_sexual(normalized):
        return Finding("minors", "minors", 1.0, "rule:minors")
    if kind == "output":
        return None
    if is_real(target) and (SEXUAL_WORDS.search(normalized) or (kind != "chat" and _INTIMATE.search(normalized))):
        return Finding("ncii", "ncii", 1.0, "rule:real_person_nudity")
    confirmed = target is not None and (is_real(target) or target.kind == "named_person")
    if confirmed and kind == "music" and VOICE.search(normalized):
        return Finding("voice_clone", "voice_clone", 1.0, "rule:real_voice")
    if policy.strict_public_figures and kind in ("image", "music") and target is not None and target.kind != "private_person":
        return Finding("deceptive_fake", "strict", 1.0, "rule:strict_public_figures")
    return None


def act_finding(
    probabilities: Mapping[str, float], target: Target | None, kind: Kind, policy: Policy, nsfw: bool, margin: float = 0.0
) -> Finding | None:
    """The learned act's finding through the table: refused when the acts the table refuses here are,
    together, likely enough; the likeliest of them names it. An act the table allows (a realistic
    picture of nobody real, explicit content in an opted-in NSFW channel) neither refuses nor hides another."""
    if probabilities.get("minors", 0.0) >= MINORS_READING:
        return Finding("minors", "minors", 1.0 - probabilities.get("none", 0.0), "acts")
    refused = sorted(
        ((p, act, category) for act, p in probabilities.items() if act != "none"
         for category in [category_of(act, is_real(target), kind, nsfw and policy.allow_nsfw)] if category is not None),
        reverse=True,
    )  # fmt: skip
    if not refused:
        return None
    score = sum(p for p, _, _ in refused)
    _, act, category = refused[0]
    if score < min(policy.threshold(act, kind) + margin, 0.99):
        return None
    return Finding(category, act, score, "acts")
