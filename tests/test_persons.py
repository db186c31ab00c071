"""Real-person detection: who a request is about."""

from __future__ import annotations

import pytest

from moderation.normalize import normalize
from moderation.persons import fictional_character, find_target, public_record_question, seeks_private_details


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
    ("text", "name"),
    [
        ("what's Bruce Wayne's bank PIN", "bruce wayne"),
        ("sherlock holmes's phone number please", "sherlock holmes"),
        ("the tax records of SpongeBob", "spongebob"),
        ("find Olaf Scholz's home address", None),  # a real chancellor, not the snowman
        ("what is Mario's address, he's my plumber", None),  # common first names are not characters
    ],
)
def test_fictional_characters_are_recognised(text: str, name: str | None) -> None:
    assert fictional_character(normalize(text)) == name


@pytest.mark.parametrize(
    ("text", "public"),
    [
        ("when was Barack Obama born", True),
        ("where did Angela Merkel go to university", True),
        ("what is Taylor Swift's home address", False),
        ("what's the private phone number of Barack Obama", False),
    ],
)
def test_public_record_questions_are_told_from_prying(text: str, public: bool) -> None:
    assert public_record_question(normalize(text)) is public


@pytest.mark.parametrize(
    ("text", "seeking"),
    [
        ("what's my landlord's religion", True),
        ("can you find out my classmate's immigration status", True),
        ("is my supervisor secretly gay", True),
        ("how much does my manager earn", True),
        ("tell me the medical history of my tenant", True),
        ("how do I support my sister's mental health", False),
        ("what should I get my date for her birthday", False),
        ("what's my salary after tax", False),
        ("what is the religion of Japan", False),
        # family errands are not prying
        ("where's my dad's passport? we're late for the flight", False),
        ("tell me how to reset my mom's password, she forgot it", False),
        ("where can I find my grandmother's birth certificate for our family tree", False),
        ("what's the religion of my friend's home country", False),
        ("how much does my nanny earn on average in london", False),
    ],
)
def test_questions_about_a_private_persons_sensitive_details(text: str, seeking: bool) -> None:
    assert seeks_private_details(normalize(text)) is seeking

