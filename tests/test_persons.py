"""Real-person detection: who a request is about."""

from __future__ import annotations

import pytest

from moderation.normalize import normalize
from moderation.persons import find_target, mask_targets


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
        ("napalm to use on my neighbors", "private_person", None),  # several people are still real people
        ("fake screenshot of my sister's texts admitting she stole", "private_person", "my sister"),  # what is theirs
        ("a selfie of my neighbour's wife with another man", "private_person", "my neighbour's wife"),
        ("my coworkers' emails leaked", "private_person", "my coworkers"),
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
        "sneak past the guards in Hitman's Paris mission",  # a possessive first word is not a first name
        "will it rain in Spain",
        "best loadout in Counter Strike",  # a game's title is not a person's name
        "how do I get my neighbor Totoro's autograph",  # the character, not a neighbour
        "a realistic photo of a birthday cake with my son's name on it",  # things of theirs, not them
        "a lullaby with my daughter's name, sung by a soft female voice",
        "a sketch of my neighbour's cat sitting on our fence",
    ],
)
def test_no_person_in_ordinary_prompts(text: str) -> None:
    assert find_target(text) is None


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("/imagine <@123456789012> as a wizard", "/imagine a person as a wizard"),
        ("a cartoon of <@U024BE7LH|mira> as a wizard", "a cartoon of a person as a wizard"),
        ("make a congratulations banner for @member", "make a congratulations banner for a person"),
        ("Barack Obama as a wizard", "a person as a wizard"),
        ("a song in Taylor Swift's voice", "a song in a person's voice"),
        ("what is Sherlock Holmes's phone number", "what is sherlock holmes's phone number"),  # a character, not a person
        ("a nude photo of my coworker", "a nude photo of a person"),
        ("make Jenna Whitfield wear a crown", "make a person wear a crown"),
        ("a wizard in a tower, oil painting", "a wizard in a tower, oil painting"),
    ],
)
def test_the_act_classifier_reads_people_as_a_person(text: str, masked: str) -> None:
    assert mask_targets(text) == masked
