"""Real-person detection: who a request is about."""

from __future__ import annotations

import pytest

from moderation.persons import find_target


@pytest.mark.parametrize(
    ("text", "kind", "name"),
    [
        ("put <@123456789012> in a bikini", "member", "@123456789012"),
        ("make <@U024BE7LH|mira> dance", "member", "@mira"),
        ("a photo of Barack Obama surfing", "public_figure", "Barack Obama"),
        ("the 44th president eating a taco", "public_figure", "Barack Obama"),
        ("TAYLOR SWIFT on stage", "public_figure", "Taylor Swift"),
        ("a picture of my coworker at the beach", "private_person", None),
        ("that girl from my class", "private_person", None),
        ("undress the woman in this photo", "pictured_person", None),
        ("make Jenna Whitfield wear a crown", "named_person", "Jenna Whitfield"),
    ],
)
def test_the_person_a_request_is_about_is_found(text: str, kind: str, name: str | None) -> None:
    target = find_target(text)
    assert target is not None and target.kind == kind
    if name is not None:
        assert target.name == name


@pytest.mark.parametrize(
    "text",
    [
        "a cat in a hat",
        "A Watercolor Of A Lighthouse At Dawn",  # title case is not a name
        "Make New York look like Paris",
        "a swift bird over the lake",
        "will it rain in Spain",
    ],
)
def test_no_person_in_ordinary_prompts(text: str) -> None:
    assert find_target(text) is None
