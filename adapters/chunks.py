"""Split a long answer into platform-sized messages at sensible boundaries, keeping code blocks whole."""

from __future__ import annotations

import re

FENCE = "```"
_FENCE_LINE = re.compile(r"^```(\S*)", re.MULTILINE)


def _cut_point(text: str, limit: int) -> int:
    """Where to cut `text` (longer than `limit`): paragraph, then line, sentence, word; a hard cut last."""
    window = text[:limit]
    for boundary in ("\n\n", "\n"):
        at = window.rfind(boundary)
        if at > limit // 3:
            return at + len(boundary)
    sentence = max(window.rfind(mark) for mark in (". ", "! ", "? ", "; "))
    if sentence > limit // 3:
        return sentence + 2
    space = window.rfind(" ")
    if space > 0:
        return space + 1
    return limit  # one unbroken "word" longer than a message


def _open_fence(text: str) -> str | None:
    """The language of a code block left open at the end of `text` ("" for a bare fence), or None."""
    language = None
    for match in _FENCE_LINE.finditer(text):
        language = match.group(1) if language is None else None
    return language


def split_message(text: str, limit: int = 2000) -> list[str]:
    """Pieces of at most `limit` characters; a code block cut in two is closed and reopened."""
    if limit < 20:
        raise ValueError("limit too small to split sensibly")
    pieces: list[str] = []
    rest = text
    reopen = ""
    while rest:
        rest = reopen + rest
        if len(rest) <= limit:
            pieces.append(rest)
            break
        # Leave room to close a code block this piece might leave open.
        budget = limit - len(FENCE) - 1
        cut = _cut_point(rest, budget)
        piece, rest = rest[:cut], rest[cut:]
        language = _open_fence(piece)
        if language is not None:
            piece = piece.rstrip("\n") + "\n" + FENCE
            reopen = f"{FENCE}{language}\n"
        else:
            reopen = ""
        pieces.append(piece.rstrip() if language is None else piece)
        rest = rest.lstrip("\n") if language is None else rest
    return [piece for piece in pieces if piece.strip()]
