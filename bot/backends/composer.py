"""The score for `algorithmic` music: style from the prompt, chords, a Markov melody, bass and drums."""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field, replace

import numpy as np

MODES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10), "dorian": (0, 2, 3, 5, 7, 9, 10),
    "lydian": (0, 2, 4, 6, 7, 9, 11), "phrygian": (0, 1, 3, 5, 7, 8, 10), "mixolydian": (0, 2, 4, 5, 7, 9, 10),
}
KEYS = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


@dataclass(frozen=True)
class Style:
    """How a kind of music is made: mode, tempo range, progression, timbres, drums, note density."""

    name: str
    mode: str
    tempo: tuple[int, int]
    progressions: tuple[tuple[int, ...], ...]
    lead: str
    chords: str
    bass: str = "bass"
    drums: str | None = None
    density: float = 0.5
    sevenths: bool = False
    swing: bool = False


STYLES: dict[str, Style] = {
    "calm": Style("calm", "lydian", (64, 80), ((0, 4, 5, 3), (0, 3, 0, 4)), "piano", "pad", density=0.3),
    "sad": Style("sad", "minor", (60, 76), ((0, 5, 2, 6), (0, 3, 4, 0)), "piano", "strings", density=0.35),
    "happy": Style("happy", "major", (112, 132), ((0, 4, 5, 3), (0, 3, 4, 4)), "pluck", "piano", drums="pop", density=0.6),
    "epic": Style("epic", "minor", (88, 104), ((0, 5, 2, 6), (0, 6, 5, 6)), "brass", "strings", drums="epic", density=0.45),
    "jazz": Style("jazz", "dorian", (100, 140), ((1, 4, 0, 0), (0, 5, 1, 4)), "piano", "piano", drums="brush", density=0.55, sevenths=True, swing=True),
    "8-bit": Style("8-bit", "major", (140, 160), ((0, 5, 3, 4), (0, 3, 4, 0)), "square", "square", bass="triangle", drums="chip", density=0.75),
    "dark": Style("dark", "phrygian", (70, 90), ((0, 1, 0, 6), (0, 5, 1, 0)), "bell", "pad", drums="pulse", density=0.35),
    "pop": Style("pop", "major", (96, 120), ((0, 4, 5, 3),), "pluck", "piano", drums="pop", density=0.55),
}
STYLE_WORDS: dict[str, str] = {
    "calm": "calm", "relaxing": "calm", "peaceful": "calm", "ambient": "calm", "gentle": "calm", "lullaby": "calm", "chill": "calm",
    "sad": "sad", "melancholy": "sad", "melancholic": "sad", "lonely": "sad", "rainy": "sad",
    "happy": "happy", "upbeat": "happy", "cheerful": "happy", "bright": "happy", "sunny": "happy", "fun": "happy",
    "epic": "epic", "heroic": "epic", "cinematic": "epic", "battle": "epic", "orchestral": "epic", "trailer": "epic",
    "jazz": "jazz", "jazzy": "jazz", "swing": "jazz", "bebop": "jazz", "lounge": "jazz",
    "8-bit": "8-bit", "8bit": "8-bit", "chiptune": "8-bit", "retro": "8-bit", "arcade": "8-bit", "nes": "8-bit",
    "dark": "dark", "spooky": "dark", "horror": "dark", "eerie": "dark", "mysterious": "dark",
    "pop": "pop", "dance": "pop", "synthpop": "pop", "synth-pop": "pop",
}
INSTRUMENT_WORDS: dict[str, str] = {
    "piano": "piano", "keys": "piano", "guitar": "pluck", "harp": "pluck", "strings": "strings", "violin": "strings",
    "cello": "strings", "synth": "square", "flute": "flute", "bell": "bell", "bells": "bell", "brass": "brass", "organ": "pad",
}
_WORD = re.compile(r"[a-z0-9-]+")


@dataclass(frozen=True, slots=True)
class Note:
    """One note: when (in beats), how long, which MIDI pitch, how loud, on which part."""

    start: float
    length: float
    pitch: int
    velocity: float
    part: str


@dataclass
class Score:
    """Everything the renderer and the MIDI writer need."""

    style: Style
    key: str
    tempo: int
    beats: float
    notes: list[Note] = field(default_factory=list)

    def seconds(self, beats: float) -> float:
        """Beats to seconds at this tempo."""
        return beats * 60.0 / self.tempo


def choose_style(prompt: str) -> Style:
    """The first style word in the prompt (default pop), with any instrument word as the lead."""
    words = _WORD.findall(prompt.lower().replace("8 bit", "8-bit"))
    style = STYLES[next((STYLE_WORDS[w] for w in words if w in STYLE_WORDS), "pop")]
    lead = next((INSTRUMENT_WORDS[w] for w in words if w in INSTRUMENT_WORDS), None)
    return replace(style, lead=lead) if lead else style


def score_rng(prompt: str, seed: int) -> np.random.Generator:
    """The random source for a (prompt, seed) pair."""
    digest = hashlib.sha256(f"{' '.join(prompt.lower().split())}\x1f{seed}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _chord(scale: tuple[int, ...], root: int, degree: int, sevenths: bool) -> list[int]:
    steps = (0, 2, 4, 6) if sevenths else (0, 2, 4)
    return [root + 12 * ((degree + s) // 7) + scale[(degree + s) % 7] for s in steps]


def _melody_step(rng: np.random.Generator, previous: int) -> int:
    # A Markov chain over scale-degree moves: mostly steps, some leaps, drifting back to the middle.
    moves = np.array([-4, -2, -1, 0, 1, 2, 4])
    weights = np.array([0.05, 0.15, 0.25, 0.1, 0.25, 0.15, 0.05])
    weights = weights * np.exp(-np.sign(moves) * previous / 10.0)
    return int(previous + rng.choice(moves, p=weights / weights.sum()))


def compose(prompt: str, seed: int, duration_s: float, tempo: int | None = None) -> Score:
    """The whole score for a request; deterministic for (prompt, seed, duration, tempo)."""
    rng = score_rng(prompt, seed)
    style = choose_style(prompt)
    key_index = int(rng.integers(12))
    bpm = tempo or int(rng.integers(style.tempo[0], style.tempo[1] + 1))
    score = Score(style, f"{KEYS[key_index]} {style.mode}", bpm, duration_s * bpm / 60.0)
    scale = MODES[style.mode]
    root = 48 + key_index
    progression = style.progressions[int(rng.integers(len(style.progressions)))]
    bars = math.ceil(score.beats / 4)
    degree_now = 0
    for bar in range(bars):
        degree = progression[bar % len(progression)]
        chord = _chord(scale, root, degree, style.sevenths)
        start = bar * 4.0
        score.notes += [Note(start, 4.0, pitch + 12, 0.35, "chords") for pitch in chord]
        if style.bass == "triangle" or style.swing:
            bass_line = [chord[0], chord[2 % len(chord)], chord[1], chord[0] + (2 if rng.random() < 0.5 else -1)]
            score.notes += [Note(start + b, 0.9, p - 12, 0.6, "bass") for b, p in enumerate(bass_line)]
        else:
            score.notes += [Note(start, 1.9, chord[0] - 12, 0.65, "bass"), Note(start + 2, 1.9, chord[0] - 12, 0.55, "bass")]
        beat = 0.0
        while beat < 4.0:
            length = float(rng.choice([0.5, 1.0, 2.0], p=[style.density, (1 - style.density) * 0.7, (1 - style.density) * 0.3]))
            length = min(length, 4.0 - beat)
            if beat == 0.0:  # strong beat: land on the chord's root, third or fifth
                degree_now = degree + 2 * int(rng.integers(3))
            else:
                degree_now = _melody_step(rng, degree_now)
            degree_now = max(-3, min(12, degree_now))
            pitch = root + 24 + 12 * (degree_now // 7) + scale[degree_now % 7]
            offset = 0.16 if style.swing and beat % 1.0 == 0.5 else 0.0
            if rng.random() > 0.08:  # a few rests let the tune breathe
                score.notes.append(Note(start + beat + offset, length * 0.95, pitch, float(rng.uniform(0.6, 0.85)), "lead"))
            beat += length
        score.notes += _drums(style.drums, start, rng)
    score.notes = _no_overlaps([n for n in score.notes if n.start < score.beats])
    return score


def _no_overlaps(notes: list[Note]) -> list[Note]:
    """End each lead note before the next begins: swing shifts starts, and a MIDI note-off of one
    note must never cut the next note of the same pitch."""
    lead = sorted((n for n in notes if n.part == "lead"), key=lambda n: n.start)
    trimmed = [
        replace(note, length=min(note.length, max(0.05, following.start - note.start - 0.01)))
        for note, following in zip(lead, lead[1:])
    ] + lead[-1:]
    return [n for n in notes if n.part != "lead"] + trimmed


def _drums(kind: str | None, start: float, rng: np.random.Generator) -> list[Note]:
    """One bar of drums (General MIDI percussion numbers) for a drum style."""
    if kind is None:
        return []
    kick, snare, hat, tom = 36, 38, 42, 45
    hits: list[tuple[float, int, float]] = []
    if kind in ("pop", "chip"):
        hits = [(0, kick, 0.9), (2, kick, 0.8), (1, snare, 0.8), (3, snare, 0.8)]
        hits += [(b / 2, hat, 0.35) for b in range(8)]
    elif kind == "epic":
        hits = [(0, kick, 1.0), (1.5, kick, 0.7), (2, tom, 0.8), (3, snare, 0.9), (3.5, tom, 0.6)]
    elif kind == "brush":
        hits = [(b, hat, 0.3) for b in range(4)] + [(b + 0.66, hat, 0.2) for b in (1, 3)] + [(0, kick, 0.4)]
    elif kind == "pulse":
        hits = [(0, kick, 0.7), (2.5, kick, 0.5)]
    if kind == "chip" and rng.random() < 0.5:
        hits.append((3.5, snare, 0.6))
    return [Note(start + beat, 0.25, pitch, velocity, "drums") for beat, pitch, velocity in hits]
