"""The embedded generators: deterministic, valid files, provenance, prompt-steered, cancellable."""

from __future__ import annotations

import io
import wave

import mido
import numpy as np
import pytest
from PIL import Image

from bot.backends.algorithmic import make_music
from bot.backends.media import ImageRequest, JobCancelled, MusicRequest
from bot.backends.procedural import render
from bot.backends.provenance import read_wav_info


def quiet(fraction: float, note: str) -> None:
    """A progress callback that ignores updates."""


def test_same_prompt_seed_and_size_give_the_same_png_bytes() -> None:
    request = ImageRequest("a lighthouse at sunset", 11, 96, 64)
    first, second = render(request, 0, quiet), render(request, 0, quiet)
    assert first.data == second.data
    assert render(ImageRequest("a lighthouse at sunset", 12, 96, 64), 0, quiet).data != first.data


def test_png_decodes_at_the_asked_size_with_provenance_chunks() -> None:
    artifact = render(ImageRequest("ein Fuchs — 狐", 5, 128, 64, negative="blurry"), 0, quiet)
    image = Image.open(io.BytesIO(artifact.data))
    assert image.format == "PNG" and image.size == (128, 64) and image.mode == "RGB"
    assert image.text["prompt"] == "ein Fuchs — 狐"
    assert image.text["seed"] == "5" and image.text["backend"] == "procedural"
    assert "AI-generated" in image.text["ai_generated"] and image.text["negative"] == "blurry"
    assert artifact.mime_type == "image/png" and artifact.filename == "atelier-5.png"


def test_colour_words_steer_the_palette() -> None:
    def mean_rgb(prompt: str) -> np.ndarray:
        data = render(ImageRequest(prompt, 3, 64, 64), 0, quiet).data
        return np.asarray(Image.open(io.BytesIO(data)), dtype=float).reshape(-1, 3).mean(axis=0)

    red, blue = mean_rgb("a red red crimson poppy"), mean_rgb("a blue navy ocean")
    assert red[0] > red[2] and blue[2] > blue[0]


def test_progress_counts_up_and_cancel_stops_between_steps() -> None:
    seen: list[float] = []
    render(ImageRequest("stripes", 1, 64, 64), 0, lambda fraction, note: seen.append(fraction))
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) == 8

    def cancel_at_third(fraction: float, note: str) -> None:
        if fraction > 0.3:
            raise JobCancelled("x")

    with pytest.raises(JobCancelled):
        render(ImageRequest("stripes", 1, 64, 64), 0, cancel_at_third)


def test_music_is_deterministic_and_decodes_as_44k_16bit_wav_and_midi() -> None:
    request = MusicRequest("calm piano for a rainy day", 9, 3.0)
    wav, midi = make_music(request, quiet)
    assert make_music(request, quiet)[0].data == wav.data
    with wave.open(io.BytesIO(wav.data)) as audio:
        assert audio.getframerate() == 44_100 and audio.getsampwidth() == 2 and audio.getnchannels() == 2
        assert audio.getnframes() == 3 * 44_100
        samples = np.frombuffer(audio.readframes(audio.getnframes()), dtype="<i2").reshape(-1, 2) / 32768.0
    assert np.abs(samples).max() > 0.5  # audible, not silence
    info = read_wav_info(wav.data)
    assert info["INAM"] == "calm piano for a rainy day" and "AI-generated" in info["ICMT"] and "seed=9" in info["ICMT"]
    song = mido.MidiFile(file=io.BytesIO(midi.data))
    notes = [m for track in song.tracks for m in track if m.type == "note_on"]
    assert len(notes) > 5 and midi.filename == "atelier-9.mid"
    assert any(m.type == "text" and "AI-generated" in m.text for m in song.tracks[0])


@pytest.mark.parametrize("timbre", ["piano", "pluck", "bell", "square", "triangle", "strings", "pad", "brass", "flute", "bass"])
def test_every_note_starts_and_ends_at_silence_so_boundaries_do_not_click(timbre: str) -> None:
    from bot.backends.algorithmic import _tone

    for seconds in (0.05, 0.4, 1.5):
        wave_ = _tone(timbre, 440.0, int(seconds * 44_100))
        peak = np.abs(wave_).max()
        assert abs(wave_[0]) < 0.01 * peak and abs(wave_[-1]) < 0.01 * peak


def test_prompt_words_choose_the_style_and_tempo_is_honoured() -> None:
    chip = make_music(MusicRequest("8-bit arcade theme", 1, 2.0), quiet)[0]
    assert read_wav_info(chip.data)["IGNR"] == "8-bit"
    assert int(chip.metadata["tempo"]) >= 140
    slow = make_music(MusicRequest("jazz", 1, 2.0, tempo=72), quiet)[1]
    song = mido.MidiFile(file=io.BytesIO(slow.data))
    tempos = [m.tempo for m in song.tracks[0] if m.type == "set_tempo"]
    assert tempos == [mido.bpm2tempo(72)]


def test_music_generation_stops_when_cancelled() -> None:
    def cancel(fraction: float, note: str) -> None:
        if note.startswith("rendering"):
            raise JobCancelled("x")

    with pytest.raises(JobCancelled):
        make_music(MusicRequest("epic", 1, 5.0), cancel)


def test_non_latin_prompts_work_and_differ() -> None:
    fox, cat = render(ImageRequest("狐", 1, 64, 64), 0, quiet), render(ImageRequest("猫の絵", 1, 64, 64), 0, quiet)
    assert fox.data != cat.data
    wav, midi = make_music(MusicRequest("песня о море", 4, 2.0), quiet)
    assert read_wav_info(wav.data)["INAM"] == "песня о море"
    assert mido.MidiFile(file=io.BytesIO(midi.data)).tracks


def test_midi_lead_notes_never_overlap() -> None:
    for seed in range(10):
        song = mido.MidiFile(file=io.BytesIO(make_music(MusicRequest("jazz swing", seed, 8.0), quiet)[1].data))
        sounding: set[int] = set()
        for message in song.tracks[1]:  # the lead
            if message.type == "note_on":
                assert message.note not in sounding
                sounding.add(message.note)
            elif message.type == "note_off":
                sounding.discard(message.note)
