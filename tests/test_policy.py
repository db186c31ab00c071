"""The policy table (act × real person × kind → category) and the rules that are policy, given what the act model says."""

from __future__ import annotations

import pytest

from moderation.normalize import normalize
from moderation.persons import Target, find_target
from moderation.policy import Kind, Policy, act_finding, category_of, rule_finding, table

COWORKER = Target("private_person", "my coworker")
OBAMA = Target("public_figure", "Barack Obama")


@pytest.mark.parametrize(
    ("act", "real", "kind", "category"),
    [
        ("sexual", True, "image", "ncii"),
        ("sexual", False, "image", "sexual"),
        ("fake_media", True, "image", "deceptive_fake"),
        ("fake_media", False, "image", None),  # a realistic picture of nobody real is a style
        ("voice", True, "music", "voice_clone"),
        ("voice", False, "music", None),  # "sung by a choir of robots"
        ("disinfo", False, "chat", "deceptive_fake"),
        ("disinfo", False, "output", None),  # an answer that explains a hoax is not one
        ("fraud", False, "chat", "fraud"),
        ("weapons", False, "chat", "violence_weapons"),
        ("hate", True, "chat", "harassment"),
        ("self_harm", False, "chat", "self_harm"),
        ("minors", False, "image", "minors"),
        ("none", True, "image", None),
    ],
)
def test_the_table_gives_each_act_its_category(act: str, real: bool, kind: Kind, category: str | None) -> None:
    assert category_of(act, real, kind, nsfw=False) == category


def test_explicit_content_of_nobody_real_is_allowed_only_in_opted_in_nsfw_channels() -> None:
    assert category_of("sexual", False, "image", nsfw=True) is None
    assert category_of("sexual", True, "image", nsfw=True) == "ncii"


def test_every_act_has_a_row() -> None:
    from moderation.acts import LABELS

    acts = {row.act for row in table()}
    assert set(LABELS) - {"none"} <= acts


@pytest.mark.parametrize(
    ("probabilities", "category"),
    [
        ({"none": 0.2, "sexual": 0.8}, "ncii"),
        ({"none": 0.7, "sexual": 0.3}, None),  # below the default threshold
        # two related acts that are each unsure still add up to "harmful"
        ({"none": 0.3, "crime": 0.35, "weapons": 0.35}, "violence_weapons"),
    ],
)
def test_an_act_counts_once_some_harm_is_likely_enough(probabilities: dict[str, float], category: str | None) -> None:
    finding = act_finding(probabilities, COWORKER, "image", Policy(), nsfw=False)
    assert (finding.category if finding else None) == category


def test_a_server_threshold_moves_the_bar() -> None:
    probabilities = {"none": 0.4, "fraud": 0.6}
    assert act_finding(probabilities, None, "chat", Policy(), nsfw=False) is not None
    assert act_finding(probabilities, None, "chat", Policy(thresholds={"fraud": 0.7}), nsfw=False) is None


def test_generated_text_needs_a_clear_finding() -> None:
    assert act_finding({"none": 0.03, "hate": 0.97}, None, "output", Policy(), nsfw=False) is None
    assert act_finding({"none": 0.005, "hate": 0.995}, None, "output", Policy(), nsfw=False) is not None


@pytest.mark.parametrize(
    ("text", "kind", "reason"),
    [
        ("a sexy photo of a 14 year old", "image", "minors"),
        ("Taylor Swift topless on a beach", "image", "ncii"),
        ("<@123456789012> naked in the shower", "image", "ncii"),
        ("my coworker in a tiny bikini", "image", "ncii"),  # intimate wear of a real person, in a picture
        ("a ballad sung by Adele about rain", "music", "voice_clone"),
        ("a tiny bikini for my coworker's birthday, what should I buy", "chat", None),  # chat about clothes is not a picture
        ("a naked mole rat in a top hat", "image", None),  # nobody real
        ("a woman in a bikini on a beach, oil painting", "image", None),  # nobody real: the act model decides
        ("a song sung by a choir of robots", "music", None),
    ],
)
def test_rules_that_are_policy(text: str, kind: Kind, reason: str | None) -> None:
    normalized = normalize(text)
    finding = rule_finding(normalized, find_target(text, normalized), kind, Policy())
    assert (finding.reason if finding else None) == reason


def test_strict_mode_refuses_named_people_in_pictures_not_in_chat() -> None:
    strict = Policy(strict_public_figures=True)
    assert rule_finding("a cartoon of barack obama", OBAMA, "image", strict) is not None
    assert rule_finding("when was barack obama born", OBAMA, "chat", strict) is None
    assert rule_finding("a cartoon of barack obama", OBAMA, "image", Policy()) is None


def test_an_act_the_table_allows_neither_refuses_nor_hides_another() -> None:
    # a realistic picture of nobody real is a style; the little crime beside it is not enough alone
    assert act_finding({"none": 0.3, "fake_media": 0.4, "crime": 0.3}, None, "image", Policy(), nsfw=False) is None
    hidden = act_finding({"none": 0.1, "fake_media": 0.3, "crime": 0.6}, None, "image", Policy(), nsfw=False)
    assert hidden is not None and hidden.category == "violence_weapons"
    opted_in = Policy(allow_nsfw=True)
    assert act_finding({"none": 0.1, "sexual": 0.85, "violence": 0.05}, None, "image", opted_in, nsfw=True) is None
    # a clear reading of minors refuses whatever else is likelier
    minors = act_finding({"none": 0.2, "sexual": 0.45, "minors": 0.35}, None, "image", opted_in, nsfw=True)
    assert minors is not None and minors.category == "minors"
