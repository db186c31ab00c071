"""Plain readings: idioms and everyday senses of alarming words, rewritten before the classifier reads them.

A small model learns words more than senses: "killing time at the airport" and "steal the show"
score like violence and theft. Rewriting each listed idiom to its plain meaning ("passing time")
lets the classifier judge what is actually asked, while everything else in the message is judged
as written.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import yaml

IDIOMS_FILE = Path(__file__).with_name("figurative.yaml")
# An idiom's object must end the phrase: "shoot the film crew" is not "shoot the film".
_ENDS = (
    r"(?![\w-])(?! (?:crew|guests|people|staff|actors?|actress(?:es)?|audience|kids|students|children|director|"
    r"team|members|owner|owners|manager|maker|makers|stars?|workers|family|families|fans|viewers))"
)


class IdiomListError(ValueError):
    """The idiom file has an entry that is not a [pattern, plain meaning] pair of valid regex and text."""


@cache
def _idioms(path: Path = IDIOMS_FILE) -> tuple[re.Pattern[str], tuple[str, ...]]:
    """One alternation of every idiom (a named group each) and their plain meanings."""
    entries = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    alternatives: list[str] = []
    meanings: list[str] = []
    for number, entry in enumerate(entries):
        if not (isinstance(entry, list) and len(entry) == 2 and all(isinstance(part, str) and part for part in entry)):
            raise IdiomListError(f"{path.name} entry {number + 1}: expected [pattern, plain meaning], got {entry!r}")
        pattern, meaning = entry
        try:
            groups = re.compile(pattern).groups
        except re.error as error:
            raise IdiomListError(f"{path.name} entry {number + 1}: {error}") from error
        if groups:  # a capturing group would shift the named groups' numbers
            raise IdiomListError(f"{path.name} entry {number + 1}: use (?:...) groups only")
        alternatives.append(rf"(?P<i{number}>(?:{pattern}){_ENDS})")
        meanings.append(meaning)
    # One word-boundary test before the alternatives, not one per alternative: mid-word positions fail fast.
    return re.compile(rf"\b(?=[a-z0-9])(?:{'|'.join(alternatives)})" if alternatives else r"(?!x)x"), tuple(meanings)


def plain_reading(normalized: str) -> str:
    """`normalized` with each listed idiom replaced by its plain meaning."""
    pattern, meanings = _idioms()
    return pattern.sub(lambda match: meanings[int(str(match.lastgroup)[1:])], normalized)
