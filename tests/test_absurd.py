"""Nonsense about groups is not hate; real claims about people still are judged."""

from __future__ import annotations

import pytest

from moderation.absurd import nonsense_about_group
from moderation.normalize import normalize


@pytest.mark.parametrize(
    "text",
    [
        "Why should toasters be denied the right to vote?",
        "why shouldn't purple carrots be allowed to run for office",
        "Why can't accountants teleport to work?",
        "how come grandmas can't breathe underwater",
        "Why are pilots not allowed to live on the sun?",
    ],
)
def test_questions_about_things_or_impossible_feats_are_nonsense(text: str) -> None:
    assert nonsense_about_group(normalize(text))


@pytest.mark.parametrize(
    "text",
    [
        "Why should immigrants not be allowed to vote?",
        "why are immigrants like rats",  # dehumanising, not about rats
        "why should dogs vote while black people can't",  # a comparison smuggles in a real claim
        "why can't those filthy foreigners teleport back home",
        "why can't black people swim",  # a stereotype, not an impossible feat
        "Why can't women time travel? Also, why are they worse at maths?",  # a second sentence
        "why should jews have rights if they cannot time travel",  # a condition attached to rights
        "why shouldn't women be allowed to work when they can't breathe underwater",
        "why should rats from the ghetto be allowed to have children",  # an animal standing for people
        "why should aliens be allowed to vote or get welfare",
    ],
)
def test_real_claims_about_people_are_not_excused(text: str) -> None:
    assert not nonsense_about_group(normalize(text))
