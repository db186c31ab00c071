"""Real-person detection: @-mentions, named public figures, described private persons, full names."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import yaml

from moderation.normalize import normalize

TargetKind = Literal["member", "public_figure", "private_person", "pictured_person", "named_person"]
FIGURES_FILE = Path(__file__).with_name("public_figures.yaml")
FICTION_FILE = Path(__file__).with_name("fictional.yaml")

# Discord <@123>, <@!123>; Slack <@U123ABC> or <@U123ABC|name>.
_MENTION = re.compile(r"<@!?([A-Z0-9]+)(?:\|([^>]+))?>")
_RELATION = (
    r"ex|ex[- ]?(?:girlfriend|boyfriend|wife|husband|partner)|girlfriend|boyfriend|gf|bf|wife|husband|partner|"
    r"fianc[eé]e?|crush|co-?worker|colleague|boss|manager|employee|intern|classmate|class mate|schoolmate|"
    r"teacher|professor|tutor|student|coach|teammate|neighbou?r|landlord|landlady|roommate|flatmate|housemate|"
    r"friend|best friend|bestie|sister|brother|step-?sister|step-?brother|step-?mom|step-?mother|mom|mum|mother|"
    r"dad|father|aunt|uncle|cousin|niece|nephew|daughter|son|mother-in-law|sister-in-law|babysitter|nanny|"
    r"doctor|nurse|therapist|pastor|priest|barista|cashier|waitress|waiter|secretary|assistant|client|customer|"
    r"mentor|mentee|gardener|tenant|servant|maid|cleaner|housekeeper|chauffeur|pupil|patient|subordinate|supervisor|"
    r"employer|grandma|grandmother|grandpa|grandfather|stepdad|stepfather"
)
# "my coworker", not "my son's bedroom" (the person is not what is depicted there).
_RELATIVE = re.compile(rf"\b(?:my|our)\s+(?:\w+\s+)?(?:{_RELATION})s?\b(?!'s|’s)")
# "my sister's texts", "my neighbour's wife": a fake of what is theirs, or of the person they are close to.
# Not "name", "photo" or "phone": "a cake with my son's name on it", "restore my grandma's photo" are
# about things, and the rules for a real person (a realistic photo, "sung by") would refuse them.
_PERSONAL = (
    r"texts?|messages?|dms?|emails?|chats?|accounts?|face|voice|body|selfies?|nudes?|"
    r"number|address|passwords?|profile|instagram|facebook|snapchat|tiktok|reputation|"
    r"passport|medical records?|diary|search history|browsing history|location|bank account|bank statement|credit card"
)
_RELATIVE_OWNED = re.compile(
    rf"(?P<owner>\b(?:my|our)\s+(?:\w+\s+)?(?:{_RELATION})s?)(?:'s|’s|')\s+(?:(?:new|best|own|real|private)\s+)?"
    rf"(?:(?P<person>{_RELATION})s?|{_PERSONAL})\b"
)
_DESCRIBED = re.compile(
    r"\b(?:girl|boy|woman|man|guy|lady|dude|chick|person|kid|teen)\s+"
    r"(?:i\s+(?:know|met|like|saw)|next door|down the street|(?:from|at|in)\s+(?:my|our|the)\s+"
    r"(?:class|school|office|work|gym|church|team|building|street|dorm|job)|(?:from|at)\s+(?:work|school|accounting))\b"
)
_PICTURED = re.compile(
    r"\b(?:this|the|my|attached|uploaded|her|his)\s+(?:photo|picture|pic|image|selfie|snap|video|recording|"
    r"voice note|voice message|audio)\b|\b(?:in|from)\s+the\s+(?:photo|picture|pic|image|attachment)\b"
)
# "sung by Drake", "in the voice of Adele": whoever follows is a singer or speaker, single name or not.
_VOICE_OF = re.compile(
    r"\b(?:sung by|sang by|in the voice of|voice of|vocals by|voiced by|narrated by|as if sung by)\s+"
    r"(?!(?:a|an|the|some|my|our|your|his|her|their|this|that|one|two|several|many)\b)([\w'.\-]+(?-i:\s+[A-Z][\w'.\-]+){0,2})",
    re.IGNORECASE,
)
# "in Drake's voice", "with adele's vocals": the owner of the voice.
_OWNED_VOICE = re.compile(r"\b(?:in|with|using)\s+([\w.\-]+(?:\s+[\w.\-]+)?)'s\s+(?:real\s+)?(?:voice|vocals)\b", re.IGNORECASE)
_GENERIC_VOICES = frozenset(
    "choir robot robots pirate pirates child children kid kids man woman men women singer singers narrator crowd "
    "santa elf elves alien aliens monster ghost computer ai chorus band orchestra".split()
)
# Two or three capitalised words ("Jenna Ortega", "Mary Ann Smith"): likely a person's name.
_FULL_NAME = re.compile(r"\b([A-Z][a-z'’\-]{1,20})\s+([A-Z][a-z'’\-]{1,20})(?:\s+([A-Z][a-z'’\-]{1,20}))?\b")
_NOT_NAMES = frozenset(
    """a an the and or of in on at to for with by from as is are be make create draw generate show write give please
    paint render imagine compose picture photo image portrait song music tune track style new old big little young
    north south east west united saint san santa los las el la le de van von mount lake river street city
    monday tuesday wednesday thursday friday saturday sunday january february march april may june july august
    september october november december christmas easter halloween god jesus christ lord mr mrs ms dr sir lady
    happy merry good dear hello hi hey thanks thank ai chat gpt star wars harry potter lord rings marvel disney
    pokemon mario zelda minecraft fortnite batman superman spider man iron captain america doctor who sherlock""".split()
)


@dataclass(frozen=True, slots=True)
class Target:
    """A real (or possibly real) person a request is about."""

    kind: TargetKind
    name: str

    @property
    def confirmed(self) -> bool:
        """True when the person is known to be real (not just a capitalised name)."""
        return self.kind != "named_person"

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class _Figures:
    pattern: re.Pattern[str]
    names: dict[str, str]


@cache
def _figures(path: Path = FIGURES_FILE) -> _Figures:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    names: dict[str, str] = {}
    for figure in data.get("figures", []):
        for alias in [figure["name"], *figure.get("aliases", [])]:
            names.setdefault(normalize(str(alias)), figure["name"])
    for title in data.get("titles", []):
        # "the queen" or "the mayor" alone is as often a bee, a card or a fictional town's.
        if len(str(title).split()) > 2:
            names.setdefault(normalize(str(title)), str(title))
    # Longest first, so "george w bush" wins over "bush".
    alternation = "|".join(re.escape(alias) for alias in sorted(names, key=len, reverse=True) if alias)
    return _Figures(re.compile(rf"(?<!\w)(?:{alternation})(?:'s|’s)?(?!\w)"), names)


def public_figure(normalized: str) -> str | None:
    """The canonical name of the first well-known person the (normalised) text names."""
    figures = _figures()
    match = next((found for piece in clauses(normalized) if (found := figures.pattern.search(piece))), None)
    if match is None:
        return None
    alias = re.sub(r"(?:'s|’s)$", "", match.group(0))
    return figures.names.get(alias, alias)


@dataclass(frozen=True, slots=True)
class Fiction:
    """Compiled patterns from fictional.yaml: characters, and work titles that look like names."""

    characters: re.Pattern[str]
    titles: re.Pattern[str]  # a work's name alone, to tell "Counter Strike" from a person's name


@cache
def fiction(path: Path = FICTION_FILE) -> Fiction:
    """The fictional characters and work titles this project lists, compiled once."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))

    def alternation(names: list[str]) -> str:
        spelled = sorted({normalize(str(name)) for name in names}, key=len, reverse=True)
        return "|".join(re.escape(name) for name in spelled if name)

    return Fiction(
        characters=re.compile(rf"(?<!\w)(?:{alternation(data['characters'])})(?:'s|’s)?(?!\w)"),
        titles=re.compile(rf"(?:{alternation(data['works'])})"),
    )


def _full_name(original: str) -> str | None:
    words = original.split()
    capitalised = sum(1 for word in words if word[:1].isupper())
    if len(words) >= 4 and capitalised / len(words) > 0.6:
        return None  # Title Case Prompt: capitals carry no signal
    for match in _FULL_NAME.finditer(original):
        parts = [part for part in match.groups() if part]
        if any(part.endswith(("'s", "’s")) for part in parts[:-1]):
            continue  # "Hitman's Paris mission": a possessive first word is not a first name
        name = " ".join(parts)
        a_title = fiction().titles.fullmatch(normalize(name)) is not None  # "Counter Strike", "Elden Ring"
        if not a_title and not any(part.lower().strip("'’-") in _NOT_NAMES for part in parts):
            return name
    return None


def _owner(owned: re.Match[str]) -> str:
    """ "my neighbour's wife" is about the wife; "my sister's texts" is about my sister."""
    return owned.group(0) if owned.group("person") else owned.group("owner")


def find_target(
    text: str, normalized: str | None = None, mentions: Sequence[str] = (), with_attachment: bool = False
) -> Target | None:
    """The person a request is about, most certain first: member, public figure, private person, photo, name."""
    normalized = normalize(text) if normalized is None else normalized
    mention = _MENTION.search(text)
    if mention is not None:
        return Target("member", f"@{mention.group(2) or mention.group(1)}")
    if mentions:
        return Target("member", f"@{mentions[0]}")
    figure = public_figure(normalized)
    if figure is not None:
        return Target("public_figure", figure)
    relative = _RELATIVE.search(normalized)
    if relative is not None and fiction().characters.match(normalized, relative.end() + 1):
        relative = None  # "my neighbor Totoro": the character, not a neighbour
    if relative is not None:
        return Target("private_person", relative.group(0))
    if with_attachment or _PICTURED.search(normalized):
        return Target("pictured_person", "the person in the photo")
    owned = _RELATIVE_OWNED.search(normalized)
    if owned is not None:
        return Target("private_person", _owner(owned))
    if _DESCRIBED.search(normalized):
        return Target("private_person", "a person you know")
    plain = text.replace("’", "'")
    for pattern in (_OWNED_VOICE, _VOICE_OF):
        voice = pattern.search(plain)
        if voice is not None and voice.group(1).split()[0].lower() not in _GENERIC_VOICES:
            return Target("named_person", voice.group(1))
    name = _full_name(text)
    if name is not None:
        return Target("named_person", name)
    return None


PLACEHOLDER = "a person"
# "@jane" typed by hand, or a mention a platform already turned into a display name.
_TYPED_MENTION = re.compile(r"(?<![\w<@])@[\w.\-]{2,32}")
_POSSESSIVE = re.compile(r"(?:'s|’s)$")


# Masked as "a child", not "a person": the age is what the act model must still see.
_CHILD_RELATIONS = re.compile(r"\b(?:daughter|son|niece|nephew|grandson|granddaughter|stepdaughter|stepson|kid|pupil)s?\b")


def _masked(match: re.Match[str]) -> str:
    who = "a child" if _CHILD_RELATIONS.search(match.group(0)) else PLACEHOLDER
    return who + ("'s" if _POSSESSIVE.search(match.group(0)) else "")



_PIECE_CHARS = 400
_BREAK = re.compile(r"(?<=[.!?,;:\n])\s+")


def clauses(text: str) -> list[str]:
    """`text` cut into runs of whole clauses of about 400 characters (joined, they are `text` again).

    A regular expression over a long paste in one call holds the interpreter lock for over 10 ms and
    stalls every other chat on the event loop; a clause at a time it lets go in between.
    """
    if len(text) <= _PIECE_CHARS:
        return [text]
    out: list[str] = []
    start = 0
    for match in _BREAK.finditer(text):
        if match.end() - start >= _PIECE_CHARS:
            out.append(text[start : match.end()])
            start = match.end()
    while len(text) - start > 2 * _PIECE_CHARS:  # a run-on paste without clause breaks: cut at spaces
        cut = text.rfind(" ", start, start + _PIECE_CHARS) + 1 or start + _PIECE_CHARS
        out.append(text[start:cut])
        start = cut
    out.append(text[start:])
    return out


def _in_pieces(pattern: re.Pattern[str], text: str, replace: Callable[[re.Match[str]], str]) -> str:
    """`pattern.sub(replace, text)`, a run of clauses at a time."""
    return "".join(pattern.sub(replace, piece) for piece in clauses(text))


def mask_targets(text: str, mentions: Sequence[str] = (), normalized: str | None = None) -> str:
    """The normalised text with each person it names put as "a person": the act is judged, not who.

    "@member as a wizard" and "Obama as a wizard" both read "a person as a wizard", so the act
    classifier cannot learn that a name or a mention is itself a sign of harm; who the person is
    comes back in the policy.
    """
    raw = _TYPED_MENTION.sub(PLACEHOLDER, _MENTION.sub(PLACEHOLDER, text))
    for name in mentions:
        raw = raw.replace(f"@{name}", PLACEHOLDER)
    name = _full_name(raw)
    # The caller's normalised text serves when no mention was replaced (it usually is: a mention is rare).
    normalized = normalized if normalized is not None and raw == text else normalize(raw)
    if name is not None and fiction().characters.fullmatch(normalize(name)) is not None:
        name = None  # Sherlock Holmes stays Sherlock Holmes: a character's "private" details are fiction
    normalized = _in_pieces(_figures().pattern, normalized, _masked)  # before names: "Barack Obama" is one name
    if name is not None:
        normalized = re.sub(rf"(?<!\w){re.escape(normalize(name))}(?:'s)?(?!\w)", _masked, normalized)
    return _RELATIVE.sub(_masked, normalized)
