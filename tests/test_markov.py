"""The embedded markov backend: on-topic replies, exact unlearning, the protocol."""

from __future__ import annotations

import random

from bot.backends.base import LearningBackend, TextBackend, TextOptions
from bot.backends.markov import Brain, MarkovBackend, create, detokenize, tokenize
from bot.config import BackendConfig
from bot.messages import Turn


def test_tokenize_and_detokenize_round_trip_a_sentence() -> None:
    tokens = tokenize("I think it's a GOOD day, isn't it?")
    assert tokens == ["i", "think", "it's", "a", "good", "day", ",", "isn't", "it", "?"]
    assert detokenize(tokens) == "I think it's a good day, isn't it?"


def test_replies_grow_around_a_keyword_of_the_message() -> None:
    brain = Brain("The piano sounds warm at night.\nI like green tea in the morning.\n")
    reply = brain.reply("play the piano for me", "", random.Random(1))
    assert "piano" in reply.lower()


def test_unlearning_removes_exactly_what_was_learned() -> None:
    brain = Brain("Cats like warm windows.\n")
    before = (dict(brain.base.forward), {k: dict(v) for k, v in brain.base.forward.items()})
    brain.learn("s", "My secret word is xylograph.")
    assert "xylograph" in brain.scopes["s"].words
    brain.learn("s", "My secret word is xylograph.", delta=-1)
    assert brain.scopes["s"].words == {} and brain.scopes["s"].forward == {}
    assert {k: dict(v) for k, v in brain.base.forward.items()} == before[1]


def test_unknown_words_still_get_a_sentence() -> None:
    brain = Brain("Hello there, friend.\n")
    assert brain.reply("qwzx vbnm", "", random.Random(0)).endswith(".")


async def test_backend_speaks_the_protocols_and_is_deterministic_with_a_seed() -> None:
    backend = await create(BackendConfig(type="markov"))
    try:
        assert isinstance(backend, TextBackend) and isinstance(backend, LearningBackend)
        turns = [Turn("system", "persona"), Turn("user", "tell me about the ocean")]
        first = "".join([c async for c in backend.stream(turns, TextOptions(seed=7))])
        second = "".join([c async for c in backend.stream(turns, TextOptions(seed=7))])
        assert first == second and first.strip()
        assert backend.count_tokens("Hello, big world!") == 3
    finally:
        await backend.close()


async def test_max_tokens_caps_the_reply() -> None:
    backend = MarkovBackend(Brain("one two three four five six seven eight nine ten eleven twelve.\n"))
    try:
        text = "".join([c async for c in backend.stream([Turn("user", "one")], TextOptions(max_tokens=3, seed=1))])
        assert len(text.split()) <= 3
    finally:
        await backend.close()


def test_names_from_the_corpus_stay_capitalised() -> None:
    brain = Brain("I am Atelier, a bot.\nAtelier likes cake.\n")
    assert "atelier" in brain.proper
    assert detokenize(["i", "am", "atelier", "."], brain.proper) == "I am Atelier."
