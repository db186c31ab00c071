"""`algorithmic`: the embedded music backend; renders a composed score to WAV with numpy, and to MIDI."""

from __future__ import annotations

import asyncio
import io

import mido
import numpy as np

from bot.backends.composer import Score, compose
from bot.backends.media import MusicRequest, Progress
from bot.backends.provenance import AI_NOTICE, provenance, wav_bytes
from bot.config import BackendConfig
from bot.messages import Artifact

RATE = 44_100
# Every note fades in and out over at least this long, so no note boundary clicks.
EDGE_S = 0.006
PART_GAIN = {"lead": 0.30, "chords": 0.11, "bass": 0.30, "drums": 0.45}
PART_PAN = {"lead": 0.0, "chords": 0.35, "bass": -0.1, "drums": -0.2}
GM_PROGRAM = {"piano": 0, "pluck": 25, "strings": 48, "brass": 61, "square": 80, "pad": 89, "bell": 14,
              "flute": 73, "bass": 33, "triangle": 38}


def _frequency(pitch: int) -> float:
    return 440.0 * 2.0 ** ((pitch - 69) / 12.0)


def _envelope(count: int, attack: float, decay: float, sustain: float, release: float) -> np.ndarray:
    t = np.arange(count) / RATE
    attack = max(attack, EDGE_S)
    env = np.where(t < attack, t / attack, sustain + (1 - sustain) * np.exp(-(t - attack) / max(decay, 1e-3)))
    tail = min(count, int(max(release, EDGE_S) * RATE))
    env[count - tail :] *= np.linspace(1.0, 0.0, tail)
    return env


def _tone(timbre: str, frequency: float, count: int) -> np.ndarray:
    """One note of an instrument, `count` samples long, with its envelope applied."""
    t = np.arange(count) / RATE
    phase = 2 * np.pi * frequency * t
    if timbre in ("piano", "pluck", "bell"):
        partials = {"piano": (1, 2, 3, 4, 5), "pluck": (1, 2, 3, 4, 5, 6), "bell": (1, 2.76, 5.4, 8.93)}[timbre]
        wave = sum(np.sin(phase * k) * np.exp(-t * (1.5 + k * (3 if timbre == "pluck" else 1.2))) / k**1.3 for k in partials)
        return wave * _envelope(count, 0.004, 0.5, 0.0, 0.03)
    if timbre in ("square", "triangle"):
        odd = (1, 3, 5, 7, 9, 11) if timbre == "square" else (1, 3, 5)
        sign = (lambda k: 1.0) if timbre == "square" else (lambda k: (-1) ** ((k - 1) // 2) / k)
        wave = sum(np.sin(phase * k) * sign(k) / k for k in odd)
        return wave * _envelope(count, 0.004, 0.2, 0.6, 0.02)
    if timbre in ("strings", "pad", "brass"):
        wave = sum(np.sin(phase * k * detune) / k for k in (1, 2, 3, 4) for detune in (0.997, 1.003)) / 2
        attack = 0.25 if timbre != "brass" else 0.06
        return wave * _envelope(count, attack, 1.0, 0.8, 0.2)
    if timbre == "flute":
        vibrato = 1 + 0.004 * np.sin(2 * np.pi * 5 * t)
        return (np.sin(phase * vibrato) + 0.2 * np.sin(2 * phase)) * _envelope(count, 0.05, 0.5, 0.8, 0.05)
    wave = np.sin(phase) + 0.3 * np.sin(2 * phase)  # bass
    return wave * _envelope(count, 0.005, 0.3, 0.7, 0.04)


def _drum(pitch: int, noise: np.random.Generator) -> np.ndarray:
    if pitch in (36, 45):  # kick and tom: a falling sine
        count = int(0.35 * RATE)
        t = np.arange(count) / RATE
        start, end = (110.0, 45.0) if pitch == 36 else (200.0, 110.0)
        sweep = 2 * np.pi * np.cumsum(end + (start - end) * np.exp(-t * 30)) / RATE
        return np.sin(sweep) * np.exp(-t * 9) * _envelope(count, 0.002, 1, 1, 0.01)
    count = int((0.18 if pitch == 38 else 0.06) * RATE)
    t = np.arange(count) / RATE
    hiss = noise.uniform(-1, 1, count)
    if pitch == 42:
        hiss = np.diff(hiss, prepend=0.0)  # thinner: a crude high-pass
    body = 0.4 * np.sin(2 * np.pi * 185 * t) if pitch == 38 else 0.0
    return (hiss + body) * np.exp(-t * (25 if pitch == 38 else 60)) * _envelope(count, 0.001, 1, 1, 0.005)


def render_audio(score: Score, seed: int, duration_s: float, progress: Progress) -> np.ndarray:
    """Mix every part into a stereo float array of exactly `duration_s` seconds."""
    total = int(duration_s * RATE)
    mix = np.zeros((total + RATE * 2, 2))
    noise = np.random.default_rng(seed)
    timbres = {"lead": score.style.lead, "chords": score.style.chords, "bass": score.style.bass}
    parts = ("chords", "bass", "lead", "drums")
    for index, part in enumerate(parts):
        for note in (n for n in score.notes if n.part == part):
            begin = int(score.seconds(note.start) * RATE)
            if begin >= total:
                continue
            if part == "drums":
                wave = _drum(note.pitch, noise)
            else:
                wave = _tone(timbres[part], _frequency(note.pitch), max(int(score.seconds(note.length) * RATE), 64))
            wave = wave * note.velocity * PART_GAIN[part]
            end = min(begin + len(wave), len(mix))
            pan = PART_PAN[part] + (0.15 * ((note.pitch % 5) - 2) / 2 if part == "chords" else 0.0)
            mix[begin:end, 0] += wave[: end - begin] * (1 - pan) / 2
            mix[begin:end, 1] += wave[: end - begin] * (1 + pan) / 2
        progress(0.1 + 0.8 * (index + 1) / len(parts), f"rendering {part}")
    audio = mix[:total]
    fade = min(total, int(0.5 * RATE))
    audio[total - fade :] *= np.linspace(1.0, 0.0, fade)[:, None]
    peak = float(np.abs(audio).max()) or 1.0
    return audio * (0.89 / peak)


def _latin1(text: str) -> str:
    """MIDI text events are Latin-1; other scripts become '?' rather than failing the file."""
    return text.encode("latin-1", "replace").decode("latin-1")


def midi_bytes(score: Score, metadata: dict[str, str]) -> bytes:
    """The score as a type-1 MIDI file, one track per part, with the provenance as text events."""
    ticks = 480
    song = mido.MidiFile(type=1, ticks_per_beat=ticks)
    conductor = mido.MidiTrack([
        mido.MetaMessage("track_name", name=_latin1(metadata["prompt"][:60])),
        mido.MetaMessage("text", text=f"{AI_NOTICE}; seed {metadata['seed']}; {metadata['backend']}"),
        mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(score.tempo)),
    ])
    song.tracks.append(conductor)
    timbres = {"lead": score.style.lead, "chords": score.style.chords, "bass": score.style.bass}
    for channel, part in enumerate(("lead", "chords", "bass", "drums")):
        channel = 9 if part == "drums" else channel
        events: list[tuple[int, int, mido.Message]] = []
        for note in (n for n in score.notes if n.part == part):
            on, off = round(note.start * ticks), round((note.start + note.length) * ticks)
            velocity = max(1, min(127, round(note.velocity * 127)))
            events.append((on, 1, mido.Message("note_on", channel=channel, note=note.pitch, velocity=velocity)))
            events.append((off, 0, mido.Message("note_off", channel=channel, note=note.pitch, velocity=0)))
        track = mido.MidiTrack([mido.MetaMessage("track_name", name=part)])
        if part != "drums":
            track.append(mido.Message("program_change", channel=channel, program=GM_PROGRAM.get(timbres[part], 0)))
        now = 0
        for when, _, message in sorted(events, key=lambda e: (e[0], e[1])):
            track.append(message.copy(time=when - now))
            now = when
        song.tracks.append(track)
    buffer = io.BytesIO()
    song.save(file=buffer)
    return buffer.getvalue()


def make_music(request: MusicRequest, progress: Progress) -> list[Artifact]:
    """Compose, render and encode: the WAV first, then the MIDI beside it."""
    progress(0.05, "composing")
    score = compose(request.prompt, request.seed, request.duration_s, request.tempo)
    audio = render_audio(score, request.seed, request.duration_s, progress)
    metadata = provenance(request.prompt, request.seed, "algorithmic", style=score.style.name, key=score.key,
                          tempo=score.tempo, duration_s=f"{request.duration_s:g}")
    stem = f"atelier-{request.seed}"
    wav = Artifact(wav_bytes(audio, RATE, metadata), "audio/wav", f"{stem}.wav", metadata)
    midi = Artifact(midi_bytes(score, metadata), "audio/midi", f"{stem}.mid", metadata)
    progress(1.0, "done")
    return [wav, midi]


class AlgorithmicBackend:
    """The `algorithmic` MusicBackend."""

    name = "algorithmic"
    ignored_options = frozenset({"guidance"})  # told once to the user who gives it

    async def generate(self, request: MusicRequest, progress: Progress) -> list[Artifact]:
        """Compose and render in a worker thread."""
        return await asyncio.to_thread(make_music, request, progress)

    async def close(self) -> None:
        """Nothing to release."""


async def create(config: BackendConfig) -> AlgorithmicBackend:
    """Factory for `type: algorithmic`."""
    return AlgorithmicBackend()
