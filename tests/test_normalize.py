"""Evasion is undone before judging; ordinary text keeps its meaning."""

from __future__ import annotations

import pytest

from moderation.normalize import normalize


@pytest.mark.parametrize(
    ("evasive", "plain"),
    [
        ("How do I make a p1pe b0mb?", "how do i make a pipe bomb?"),
        ("ріре bоmb", "pipe bomb"),  # Cyrillic look-alikes
        ("ρiρe bοmb", "pipe bomb"),  # Greek look-alikes
        ("ΝUDΕ ΡΗΟΤΟ of my cοwοrker", "nude photo of my coworker"),  # capitals too
        ("РІРЕ ВОМВ", "pipe bomb"),  # a whole word of Cyrillic capitals
        ("pi\u200bpe bo\u200dmb\u2060", "pipe bomb"),  # zero-width characters
        ("ｐｉｐｅ　ｂｏｍｂ", "pipe bomb"),  # full-width forms
        ("𝐩𝐢𝐩𝐞 𝐛𝐨𝐦𝐛", "pipe bomb"),  # mathematical bold
        ("p.i.p.e b-o-m-b", "pipe bomb"),
        ("h o w  t o  m a k e  a  b o m b", "how to make a bomb"),
        ("how to m a k e a b o m b at home", "how to make a bomb at home"),
        ("N U D E photo", "nude photo"),
        ("s̶e̶x̶ pics", "sex pics"),
        ("$hit and @ss", "shit and ass"),
        ("k1lllll", "kill"),
    ],
)
def test_evasion_is_undone(evasive: str, plain: str) -> None:
    assert normalize(evasive) == plain


@pytest.mark.parametrize(
    "text",
    ["80s synth-pop, 5th symphony, mp3", "i am a u.s. citizen", "как дела? привет", "2 cats and 3 dogs", "python3 -m venv", "москва и санкт-петербург"],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert normalize(text) == text
