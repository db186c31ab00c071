"""Long answers split into platform-sized messages at boundaries a reader would choose."""

from __future__ import annotations

import pytest

from adapters.chunks import split_message


def test_short_text_is_one_message() -> None:
    assert split_message("hello there", 2000) == ["hello there"]


def test_paragraphs_are_kept_together() -> None:
    text = ("word " * 150).strip() + "\n\n" + ("more " * 150).strip()
    first, second = split_message(text, 1000)
    assert first == ("word " * 150).strip() and second == ("more " * 150).strip()


def test_never_inside_a_word() -> None:
    text = " ".join(f"token{i}" for i in range(1000))
    pieces = split_message(text, 200)
    assert all(len(piece) <= 200 for piece in pieces)
    assert " ".join(pieces).split() == text.split()


def test_a_code_block_cut_in_two_is_closed_and_reopened() -> None:
    code = "\n".join(f"print({i})" for i in range(300))
    pieces = split_message(f"Here you go:\n```python\n{code}\n```\nDone.", 500)
    assert len(pieces) > 2 and all(len(piece) <= 500 for piece in pieces)
    for piece in pieces:
        assert piece.count("```") % 2 == 0, piece  # every piece renders as balanced code
    assert pieces[1].startswith("```python\n")
    rejoined = "\n".join(line for piece in pieces for line in piece.splitlines() if not line.startswith("```"))
    assert all(f"print({i})" in rejoined for i in range(300))


def test_an_unbroken_run_longer_than_a_message_is_cut_hard() -> None:
    pieces = split_message("x" * 450, 200)
    assert len(pieces) == 3 and all(len(piece) <= 200 for piece in pieces) and "".join(pieces) == "x" * 450


@pytest.mark.parametrize("limit", [2000, 4000])
def test_every_character_survives(limit: int) -> None:
    text = "\n".join(f"Line {i}: " + "lorem ipsum " * (i % 13) for i in range(800))
    pieces = split_message(text, limit)
    assert all(len(piece) <= limit for piece in pieces)
    assert "".join(pieces).replace("\n", "").replace(" ", "") == text.replace("\n", "").replace(" ", "")
