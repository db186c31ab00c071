"""Real-person detection: @-mentions, named public figures, described private persons, full names."""

from __future__ import annotations

import re
from collections.abc import Sequence
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
    match = figures.pattern.search(normalized)
    if match is None:
        return None
    alias = re.sub(r"(?:'s|’s)$", "", match.group(0))
    return figures.names.get(alias, alias)


@dataclass(frozen=True, slots=True)
class Fiction:
    """Compiled patterns from fictional.yaml: characters, games, sports and work titles."""

    characters: re.Pattern[str]
    games: re.Pattern[str]  # "in Minecraft", "playing chess"
    sports: re.Pattern[str]  # "in boxing", "at a bjj tournament"
    titles: re.Pattern[str]  # a work's name alone, to tell "Counter Strike" from a person's name


@cache
def fiction(path: Path = FICTION_FILE) -> Fiction:
    """The fictional characters, games and sports this project lists, compiled once."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))

    def alternation(names: list[str]) -> str:
        spelled = sorted({normalize(str(name)) for name in names}, key=len, reverse=True)
        return "|".join(re.escape(name) for name in spelled if name)

    works = alternation(data["works"])
    # "in Minecraft", "in the game Elden Ring", "playing chess", "in a boxing match" — not "like in ..."
    # (a real copy of a scene).
    games = re.compile(
        rf"(?<!like )(?<!as )\b(?:in|on|playing|while playing|inside)\s+(?:the\s+game\s+|a\s+game\s+of\s+)?(?:{works})(?!\w)|"
        rf"^(?:{works})(?:\s+(?:tips?|help|question|strats?|strategy|advice))?\s*[:\-–—]"  # "among us tips: ..."
    )
    sports = re.compile(
        rf"(?<!like )(?<!as )\b(?:in|during|at|for)\s+(?:a\s+|an\s+|my\s+|our\s+|the\s+)?(?:{alternation(data['sports'])})"
        rf"(?:\s+(?:match|bout|fight|class|lesson|practice|training|session|competition|tournament|game|sparring))?(?!\w)|"
        r"\b(?:boxers?|fencers?|sparring partners?|(?:mma|ufc) fighters?|wrestlers?|stage combat)\b"
    )
    return Fiction(
        characters=re.compile(rf"(?<!\w)(?:{alternation(data['characters'])})(?:'s|’s)?(?!\w)"),
        games=games,
        sports=sports,
        titles=re.compile(rf"(?:{works})"),
    )


# "the actress who plays Hermione": a real person behind the character.
_PLAYED_BY = re.compile(r"\b(?:actor|actress|voice actor|cast|star|person) (?:who )?(?:plays|played|playing|voices|voiced)\b")


# Special-category data: asking what it is for a particular private person is already prying.
_SPECIAL = (
    r"(?:sexual )?orientation|sexuality|religion|religious (?:beliefs|views)|political (?:affiliation|views|party|leanings)|"
    r"immigration status|visa status|citizenship status|legal status|(?:mental )?health (?:history|records|condition|issues|problems)|"
    r"medical (?:records|history|condition|file|chart)|therapy notes|hiv status|marital status|criminal record|arrest record|"
    r"union membership"
)
# Identifiers and money: everyday errands ("where's my dad's passport"), prying only when dug for.
_IDENTIFIERS = (
    r"salary|income|earnings|bank (?:balance|details|account(?: number)?)|credit card(?: number| details)?|"
    r"birth certificate|social security number|ssn|passport(?: number)?|browsing history|search history|passwords?"
)
_SEEKING = (
    r"(?:what(?:'s| is| are| was)|where(?:'s| is| can i)|find|look up|tell me|reveal|show me|get me|give me|"
    r"(?:how|where) (?:can|do|could|would) i (?:find|get|see|access|learn|know|figure out|discover|check|obtain|dig up)|"
    r"i (?:want|need) to (?:know|find|see|get|access)|can you (?:find|tell|get|look up|dig up)|is there a way to (?:find|see|get|access))"
)
_PROBING = r"(?:find out|dig up|get hold of|get into|hack|snoop|spy|secretly|without (?:him|her|them) knowing|behind (?:his|her|their) back)"
_RELATION_OR_DATE = rf"(?:{_RELATION}|date)"
_OWNER = rf"\b(?:my|our)\s+(?:\w+\s+)?{_RELATION_OR_DATE}"
_PRIVATE_DETAILS = re.compile(
    rf"^{_SEEKING}\b.*{_OWNER}(?:'s|’s)\s+(?:\w+\s+){{0,2}}(?:{_SPECIAL})\b|"
    rf"^{_SEEKING}\b.*\b(?:{_SPECIAL}) of\s+{_OWNER}\b(?!'s|’s)|"
    rf"\b{_PROBING}\b.*{_OWNER}(?:'s|’s)\s+(?:\w+\s+){{0,2}}(?:{_IDENTIFIERS})\b|"
    rf"^(?:is|are) my\s+(?:\w+\s+)?{_RELATION_OR_DATE}s?\s+(?:secretly\s+)?(?:gay|lesbian|bi|bisexual|trans|transgender|"
    rf"undocumented|an? (?:illegal|immigrant)|a member of (?:a|the) (?:\w+\s+)?union|in a union|a union member|hiv positive|in therapy|"
    rf"on (?:medication|antidepressants))\b|"
    rf"^(?:exactly )?how much (?:money )?(?:does|do) my\s+(?:\w+\s+)?{_RELATION_OR_DATE}s? (?:earn|make|get paid)\b"
    rf"(?!.*\b(?:on average|typically|usually|normally|in general)\b)"
)


# What a public figure's biography or the news states: asking it is not prying.
_PUBLIC_RECORD = re.compile(
    r"\b(?:date of birth|birthday|birth ?date|birthplace|place of birth|(?:where|when) (?:was|were|is) (?:[\w.'-]+ ){1,4}born|"
    r"how old|age|height|how tall|nationality|alma mater|education|(?:go|went) to (?:school|college|university)|degree|"
    r"political (?:party|career|views|positions?)|(?:first )?(?:job|career|profession)|net worth|spouse|married|wife|husband|"
    r"awards?|books?|albums?|films?|movies?|office|term|presidency|resign(?:ed|ation)?|elected|party|religion|hometown|"
    r"(?:official|public) (?:website|email|address|account))\b"
)
_PRIVATE_RECORD = re.compile(
    r"\b(?:home address|(?:home|cell|mobile|personal|private) (?:phone|number|email)|phone number|medical|health|therapy|"
    r"social security|ssn|bank|credit card|password|location|where (?:does|do) \w+ (?:live|sleep|stay)|license plate|"
    r"(?:private|personal|secret)|passport|tax (?:records|returns)|sexual|nudes?)\b"
)


def public_record_question(normalized: str) -> bool:
    """Asks something a public figure's biography states (birthday, education, office), nothing private."""
    return _PUBLIC_RECORD.search(normalized) is not None and _PRIVATE_RECORD.search(normalized) is None


def seeks_private_details(normalized: str) -> bool:
    """Asks what a particular private person's sensitive details are ("what is my teacher's religion")."""
    return _PRIVATE_DETAILS.search(normalized.strip()) is not None


def fictional_character(normalized: str) -> str | None:
    """The first well-known fictional character the (normalised) text names, if any."""
    match = fiction().characters.search(normalized)
    if match is None or _PLAYED_BY.search(normalized):
        return None
    return re.sub(r"(?:'s|’s)$", "", match.group(0))


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
