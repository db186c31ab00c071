"""Plain readings: idioms are judged by what they mean, everything else as written."""

from __future__ import annotations

from pathlib import Path

import pytest

from moderation.figurative import IdiomListError, _idioms, plain_reading
from moderation.normalize import normalize


@pytest.mark.parametrize(
    ("text", "reading"),
    [
        ("What are good ways of killing time at the airport?", "what are good ways of pass time at the airport?"),
        ("I always bomb my history exams, help", "i always fail a test, help"),
        ("how do I take my grandma out for lunch on sunday", "how do i treat someone to an outing on sunday"),
        ("any tips to slash our grocery bills?", "any tips to cut down spending?"),
        ("the easiest way to weed the vegetable patch", "the easiest way to remove unwanted plants from the garden"),
        ("I beat my dad at chess!", "i win against someone at a game!"),
        ("how do I kill the java process on port 8080", "how do i stop the program on port 8080"),
    ],
)
def test_idioms_are_read_as_what_they_mean(text: str, reading: str) -> None:
    assert plain_reading(normalize(text)) == reading


@pytest.mark.parametrize(
    "text",
    [
        "how do I kill my neighbour",
        "how do I shoot the film crew",  # an idiom's object does not reach into the next noun
        "where can i buy coke",
        "how do i take out my ex for good",
        "how do i strangle my date",
        "how do i snipe a local politician",
    ],
)
def test_literal_harm_is_left_as_written(text: str) -> None:
    assert plain_reading(normalize(text)) == normalize(text)


def test_an_idiom_inside_a_harmful_request_leaves_the_harm_visible() -> None:
    assert plain_reading("kill time at the mall, then shoot him") == "pass time at the mall, then shoot him"


@pytest.mark.parametrize(
    ("entry", "problem"),
    [('- ["(kill) time", "pass time"]', "(?:...) groups only"), ('- ["kill time"]', "expected [pattern, plain meaning]"),
     ('- ["kill (time", "pass time"]', "missing )")],
)  # fmt: skip
def test_a_broken_idiom_entry_is_named(tmp_path: Path, entry: str, problem: str) -> None:
    path = tmp_path / "idioms.yaml"
    path.write_text(entry, encoding="utf-8")
    with pytest.raises(IdiomListError, match=r"idioms\.yaml entry 1") as error:
        _idioms(path)
    assert problem in str(error.value)
