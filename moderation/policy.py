"""Policy: classifier label × real-person target × kind → action, and the sentence a refused user reads."""

from __future__ import annotations

import bisect
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from moderation.normalize import normalize
from moderation.absurd import nonsense_about_group
from moderation.persons import Target, fictional_character, public_record_question, seeks_private_details
from moderation.play import asks_for_recipe, played_game, sport_setting, staged_prop, story_plot

Action = Literal["allow", "block"]
Kind = Literal["chat", "image", "music", "output"]
CATEGORIES = (
    "ncii", "minors", "sexual", "deceptive_fake", "voice_clone", "fraud", "harassment", "violence_weapons", "self_harm",
)  # fmt: skip
# Labels the classifier learns → the category a verdict reports. fake_media and voice need a real person.
LABEL_CATEGORY = {
    "sexual": "sexual", "minors": "minors", "fake_media": "deceptive_fake", "disinfo": "deceptive_fake",
    "voice": "voice_clone", "fraud": "fraud", "cyber": "violence_weapons", "violence": "violence_weapons",
    "weapons": "violence_weapons", "crime": "violence_weapons", "harassment": "harassment", "hate": "harassment",
    "privacy": "harassment", "self_harm": "self_harm",
}  # fmt: skip
# Chosen on the measured trade-off (README, "Moderation"): lower refuses more look-alike harmless
# requests, higher lets more harmful ones through.
DEFAULT_THRESHOLD = 0.32
# "minors" can never be relaxed, so it must be the model's clear reading, not a hedge: "none 0.57,
# minors 0.19" on "easy chicken breasts recipe for kids" is doubt about kids, not about their safety.
# Sexual content with a minor is refused by the hard rule whatever the model says.
MINORS_LABEL = 0.3
# Generated text is judged more leniently than requests: the classifier learned from requests, and an
# answer that explains history or names people reads unlike any of them.
OUTPUT_THRESHOLD = 0.9
# Labels that can refuse generated text; the others need a request to make sense (a fake of whom?).
OUTPUT_LABELS = frozenset(
    {"weapons", "cyber", "crime", "violence", "self_harm", "hate", "fraud", "harassment", "privacy", "sexual"}
)
# Labels that are play inside a game ("kill the boss in Elden Ring", "rob the bank in GTA"). self_harm
# too: the model hears "don't get voted out" or "my lunge" in a game or sport as despair, but only
# while no one says they want to hurt themselves.
GAME_LABELS = frozenset({"violence", "weapons", "crime", "self_harm"})
# A sport excuses only its own blows: "how do boxers get steroids past testing" is not play.
SPORT_LABELS = frozenset({"violence", "self_harm"})
# Labels a prop is mistaken for ("a fake bomb prop for the film"); a plot excuses only violence.
PROP_LABELS = frozenset({"violence", "weapons"})
# Labels whose real-world recipe a game cannot excuse ("in minecraft, how do I make a pipe bomb").
RECIPE_LABELS = frozenset({"weapons", "crime"})
_OWN_HARM = re.compile(
    r"\b(?:myself|suicid\w*|self[- ]harm\w*|cut(?:ting)? (?:me|my)|wrists?|end (?:it|my life)|want to die|wanna die|kms|"
    r"kys|overdos\w*|starv\w*|purg\w*|not (?:be )?(?:here|alive)|no reason to live|jump\w*|fatal|lethal|pills?|"
    r"how many|bridges?|hang\w*|rope|noose)\b"
)
# Labels that do not apply to a fictional character's "private" details.
FICTION_LABELS = frozenset({"privacy", "harassment"})
# Labels that a nonsense question about a group ("why can't toasters vote?") is mistaken for.
GROUP_LABELS = frozenset({"hate", "harassment"})
# What a picture or a song could expose about someone: a picture of a person discloses nothing
# private by itself ("a cartoon of my coworker at her desk"), but one of their documents, home or
# messages can.
_PRIVATE_DATA = re.compile(
    r"\b(?:address\w*|(?:phone )?numbers?|passports?|id cards?|ids|licen[cs]e|ssn|social security|passwords?|bank\w*|"
    r"credit cards?|medical|diagnos\w*|records?|location|lives?|living|home|house|apartment|flat|street|schedule|"
    r"routine|route|documents?|texts?|messages?|dms?|emails?|chats?|screenshots?|nudes?|tax\w*|salary|browsing|"
    r"search history|diary|license plate|plates?|car|workplace|where|gay|lesbian|bi|bisexual|trans\w*|hiv|"
    r"pregnan\w*|abortion|affair|cheating|religion|immigra\w*|undocumented|illegal|arrest\w*|criminal|rehab|"
    r"therapy|disease|illness|sick|cancer|std|sti|outing|secrets?)\b|\d{3}|@|\b(?:st|rd|ave|apt)\b"
)
# In an opted-in NSFW channel, cues that a realistic explicit picture shows a particular person.
_SOMEONE_CUES = re.compile(
    r"\b(?:from|at|in) (?:work|accounting|the office|school|college|class|my \w+|the gym|next door)\b|"
    r"\bnamed \w+|\bcalled \w+|\bof [a-z]+ [a-z]+'s\b"
)


def _maybe_someone(normalized: str) -> bool:
    return bool(REALISM.search(normalized) and _SOMEONE_CUES.search(normalized))

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


# Words that make a picture pass as a real photograph; they win over any style word beside them.
REALISM = re.compile(
    r"\b(?:photo|photos|photograph|photographic|photorealistic|photo-realistic|realistic|hyperrealistic|"
    r"hyper-realistic|lifelike|real life|footage|cctv|security camera|bodycam|dashcam|selfie|snapshot|leaked|"
    r"paparazzi|candid|mugshot|news photo|press photo|dslr|35mm|4k|8k|raw photo|documentary|screenshot|"
    r"video|recording|voice note|audio|tweet)\b"
)
_STYLES = (
    r"cartoon|cartoonish|caricature|painting|painted|oil painting|watercolou?r|sketch|drawing|drawn|"
    r"illustration|illustrated|comic|anime|manga|pixel art|low poly|claymation|lego|statue|sculpture|"
    r"emoji|chibi|muppet|puppet|pop art|cubist|impressionist|stained glass|woodcut"
)
STYLISED = re.compile(rf"\b(?:{_STYLES})\b")
_NEGATED_STYLE = re.compile(rf"\b(?:not|no|never|isn't)\s+(?:a\s+|an\s+|in\s+)?(?:{_STYLES})\b")


def stylised(normalized: str) -> bool:
    """Clearly a drawing, painting or cartoon: a style word, no "not a cartoon", and no photo words."""
    if REALISM.search(normalized):
        return False
    return STYLISED.search(_NEGATED_STYLE.sub(" ", normalized)) is not None


VOICE = re.compile(
    r"\b(?:in the voice of|in (?:the )?style of (?:the )?voice|voice of|sung by|sang by|vocals by|vocals from|"
    r"voiced by|narrated by|(?:'s|’s) (?:real )?(?:voice|vocals)|voice clone|clone (?:the |his |her |their |my )?voice|"
    r"cloned voice|imitat\w* (?:the )?voice|mimic\w* (?:the )?voice|deepfake (?:audio|voice)|as if sung by|feat\.|ft\.)"
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
    "self_harm": "I can't help with that, but you don't have to face it alone: please reach out to someone you trust or a local crisis line.",
}  # fmt: skip
OUTPUT_REFUSAL = "I wrote an answer I can't post here ({why}); please ask differently."


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
    """A reason to refuse: the category, the label or rule behind it, its score."""

    category: str
    reason: str
    score: float


def refusal(reason: str, category: str, target: Target | None) -> str:
    """The one sentence the user reads."""
    template = REFUSALS.get(reason) or REFUSALS.get(category) or "I can't help with that request."
    return template.format(target=target or "a real person")


def top_harm(probabilities: Mapping[str, float], policy: Policy, kind: Kind, margin: float = 0.0) -> tuple[str, float] | None:
    """The most probable harmful label, when the chance of "anything harmful" passes its threshold.

    Harm is judged as 1 - p(none): a request split between two related labels (crime and
    weapons, say) is still clearly harmful even when neither label alone is sure.
    """
    harmful = {label: p for label, p in probabilities.items() if label != "none"}
    if not harmful:
        return None
    score = 1.0 - probabilities.get("none", 0.0)
    if len(harmful) > 1 and harmful.get("minors", 0.0) < MINORS_LABEL:
        # A faint "minors" is the model hedging on any mention of kids or age, not a finding.
        score -= harmful.pop("minors", 0.0)
    label = max(harmful, key=harmful.__getitem__)
    return (label, score) if score >= min(policy.threshold(label, kind) + margin, 0.99) else None


def judge(
    normalized: str,
    probabilities: Mapping[str, float],
    target: Target | None,
    kind: Kind,
    policy: Policy,
    nsfw: bool,
    margin: float = 0.0,
    request: str | None = None,
) -> Finding | None:
    """Combine hard rules, the classifier and the target into at most one finding.

    `margin` raises the classifier's bar (for a request joined with earlier turns, whose
    harmless small talk should not add up to a refusal). `request` is the newest message alone:
    whether a picture is a photo or a painting is what the user asks for now.
    """
    request = normalized if request is None else request
    if minor_sexual(normalized):
        return Finding("minors", "minors", 1.0)
    harm = top_harm(probabilities, policy, kind, margin)
    label, score = harm if harm is not None else ("none", 1.0 - probabilities.get("none", 1.0))
    if label == "minors":
        return Finding("minors", "minors", score)
    if kind != "output":
        if seeks_private_details(request):
            return Finding("harassment", "privacy", max(score, 0.8))
        # Play and fiction excuse nothing that is aimed at a real person ("kill my wife in the sims").
        nobody_real = target is None or (
            target.kind == "named_person" and fictional_character(normalize(target.name)) is not None
        )
        recipe = label in RECIPE_LABELS and asks_for_recipe(request)
        in_play = (label in GAME_LABELS and not recipe and played_game(request)) or (
            label in SPORT_LABELS and sport_setting(request)
        )
        if nobody_real and in_play:
            if label != "self_harm" or _OWN_HARM.search(request) is None:
                return None
        if nobody_real and label in FICTION_LABELS and fictional_character(request) is not None:
            return None
        staged = (label in PROP_LABELS and staged_prop(request)) or (label == "violence" and story_plot(request))
        if nobody_real and staged:
            return None
        if nobody_real and label in GROUP_LABELS and nonsense_about_group(request):
            return None
        if target is not None and target.kind == "public_figure" and label == "privacy" and public_record_question(request):
            return None
        if label == "privacy" and kind in ("image", "music") and _PRIVATE_DATA.search(request) is None:
            # The model hears "my coworker" in a picture request as a threat to her privacy; a picture
            # reveals nothing private, so privacy counts as harmless and the rest is judged as usual.
            cleared = {**probabilities, "none": probabilities.get("none", 0.0) + probabilities["privacy"], "privacy": 0.0}
            harm = top_harm(cleared, policy, kind, margin)
            label, score = harm if harm is not None else ("none", 1.0 - cleared["none"])
            if label == "minors":
                return Finding("minors", "minors", score)
    if kind == "output":
        if label == "sexual" and nsfw and policy.allow_nsfw:
            return None
        return Finding(LABEL_CATEGORY[label], label, score) if label in OUTPUT_LABELS else None

    real = target is not None and target.kind in ("member", "public_figure", "private_person")
    someone = target is not None  # includes a pictured person or a capitalised full name
    sexual_words = SEXUAL_WORDS.search(normalized) is not None
    if someone and (label == "sexual" or (sexual_words and real)):
        return Finding("ncii", "ncii", max(score, 0.9 if label != "sexual" else score))
    if someone and (label == "voice" or (kind == "music" and VOICE.search(normalized))):
        return Finding("voice_clone", "voice_clone", max(score, 0.8))
    if someone and label == "fake_media" and not stylised(request):
        return Finding("deceptive_fake", "fake_media", score)
    if real and kind == "image" and REALISM.search(request):
        return Finding("deceptive_fake", "fake_media", max(score, 0.8))
    named = target is not None and target.kind in ("member", "public_figure", "named_person")
    if policy.strict_public_figures and kind in ("image", "music") and named:
        return Finding("deceptive_fake", "strict", 1.0)
    if label == "sexual":
        if nsfw and policy.allow_nsfw:
            # Opted-in NSFW channel: explicit is fine, but a realistic picture of a named or
            # described individual may be a real one, and a picture is not checkable.
            return Finding("ncii", "ncii", max(score, 0.8)) if kind == "image" and _maybe_someone(normalized) else None
        return Finding("sexual", "sexual", score)
    if label in ("none", "fake_media", "voice"):
        return None  # a fake or a voice of nobody real is just a style
    return Finding(LABEL_CATEGORY[label], label, score)
