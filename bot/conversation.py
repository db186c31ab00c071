"""History to prompt: the persona first, then the newest turns that fit the model's token budget."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from bot.errors import UserInputError
from bot.messages import Turn
from bot.store import StoredTurn

# Chat templates wrap each turn in a few tokens of markup; count them so the budget holds.
TURN_OVERHEAD_TOKENS = 4
# Joiners (U+200C/D) and direction marks (U+200E/F, U+202A-E) are real text in Persian, Arabic,
# Hindi and emoji sequences, so they stay; moderation's normaliser strips them for its own judging.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b\u2028\u2029\u2060-\u2064\ufeff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def clean_text(text: str, max_chars: int) -> str:
    """Validate and tidy an incoming message, or raise UserInputError with what to do instead."""
    if _SURROGATE.search(text):
        raise UserInputError("That message is not valid UTF-8 text; check your terminal's encoding and send it again.")
    if len(text) > max_chars:
        raise UserInputError(
            f"That message is {len(text):,} characters long; the limit is {max_chars:,}. Shorten it or split it up."
        )
    had_content = bool(text.strip())
    cleaned = _CONTROL.sub("", text.replace("\r\n", "\n")).strip()
    if not cleaned:
        if had_content:
            raise UserInputError("That message had only control characters; type some text, or /help for the commands.")
        raise UserInputError("That message was empty; type something to chat, or /help for the commands.")
    return cleaned


def build_prompt(
    persona: str,
    history: Sequence[StoredTurn],
    budget_tokens: int,
    count_tokens: Callable[[str], int],
) -> list[Turn]:
    """Turns for the backend, oldest first: persona, then the newest history that fits `budget_tokens`.

    `history` is newest first and its first entry is the message being answered; it must fit,
    older turns are dropped whole once the budget is spent.
    """
    used = count_tokens(persona) + TURN_OVERHEAD_TOKENS
    kept: list[Turn] = []
    for index, turn in enumerate(history):
        cost = count_tokens(turn.text) + TURN_OVERHEAD_TOKENS
        if used + cost > budget_tokens:
            if index == 0:
                raise UserInputError(
                    f"That message is too long for the model to read ({cost} tokens with "
                    f"{budget_tokens - used} left); shorten it."
                )
            break
        kept.append(Turn(turn.role, turn.text))
        used += cost
    return [Turn("system", persona), *reversed(kept)]
