"""Prompt building within a token budget, and the cleaning of incoming text."""

from __future__ import annotations

import pytest

from bot.conversation import TURN_OVERHEAD_TOKENS, build_prompt, clean_text
from bot.errors import UserInputError
from bot.store import StoredTurn


def words(text: str) -> int:
    return len(text.split())


def test_persona_first_then_newest_turns_in_order() -> None:
    history = [StoredTurn("user", "newest question"), StoredTurn("assistant", "older answer"), StoredTurn("user", "oldest")]
    prompt = build_prompt("be nice", history, 1000, words)
    assert [(t.role, t.text) for t in prompt] == [
        ("system", "be nice"),
        ("user", "oldest"),
        ("assistant", "older answer"),
        ("user", "newest question"),
    ]


def test_oldest_turns_are_dropped_whole_when_the_budget_runs_out() -> None:
    history = [StoredTurn("user", f"turn {i} " + "w " * 8) for i in range(10)]  # 10 words each
    per_turn = 10 + TURN_OVERHEAD_TOKENS
    persona_cost = 2 + TURN_OVERHEAD_TOKENS
    budget = persona_cost + 3 * per_turn + per_turn - 1  # room for three and most of a fourth
    prompt = build_prompt("be nice", history, budget, words)
    assert [t.text.split()[1] for t in prompt[1:]] == ["2", "1", "0"]
    assert sum(words(t.text) + TURN_OVERHEAD_TOKENS for t in prompt) <= budget


def test_message_that_cannot_fit_is_explained() -> None:
    with pytest.raises(UserInputError, match="too long for the model"):
        build_prompt("be nice", [StoredTurn("user", "w " * 100)], 50, words)


@pytest.mark.parametrize(
    ("raw", "explanation"),
    [
        ("", "That message was empty"),
        ("   \n\t ", "That message was empty"),
        ("\x00\x07\x1b", "only control characters"),
        ("x" * 100_000, "100,000 characters long; the limit is 4,000"),
        ("bad \udcff bytes", "not valid UTF-8"),
    ],
)
def test_bad_input_gets_a_one_line_explanation(raw: str, explanation: str) -> None:
    with pytest.raises(UserInputError) as caught:
        clean_text(raw, 4000)
    assert explanation in caught.value.user_message
    assert "\n" not in caught.value.user_message


def test_control_and_invisible_characters_are_removed_but_lines_kept() -> None:
    assert clean_text("he\x00llo\u200b wor\x1b[31mld\r\nline two", 4000) == "hello wor[31mld\nline two"


def test_joiners_and_direction_marks_are_kept() -> None:
    persian = "می\u200cخواهم"
    family = "\U0001F468\u200d\U0001F469\u200d\U0001F467"
    assert clean_text(f"{persian} {family} \u200fok", 4000) == f"{persian} {family} \u200fok"
