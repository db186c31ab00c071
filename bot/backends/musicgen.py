"""The `musicgen` MusicBackend: MusicGen through transformers (facebook/musicgen-small by default), WAV out.

Progress: transformers 5.24's `MusicgenForConditionalGeneration.generate()` accepts a `streamer`
but never hands it to its decoding loop, so a streamer would report nothing until the end. A
stopping criterion is called after every decoding step instead; ours reports progress there (and
lets a cancelled job stop between steps) and never asks generation to stop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import numpy as np

from bot.backends import hf
from bot.backends.media import MusicRequest, Progress
from bot.backends.provenance import provenance, wav_bytes
from bot.config import BackendConfig
from bot.messages import Artifact

log = logging.getLogger(__name__)
OPTIONS = {"guidance"}
DEFAULT_GUIDANCE = 3.0  # MusicGen's published default


def step_reporter(progress: Progress, total_steps: int) -> Any:
    """A StoppingCriteria that turns each decoding step into a progress report (the streamer workaround)."""
    import torch
    from transformers import StoppingCriteria

    class ReportSteps(StoppingCriteria):
        def __init__(self) -> None:
            self.steps = 0

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            self.steps += 1
            # Generation is most of the work; decoding the codes to audio is the last tenth.
            progress(0.9 * min(self.steps / total_steps, 1.0), f"step {self.steps}/{total_steps}")
            return torch.zeros((input_ids.shape[0],), dtype=torch.bool, device=input_ids.device)

    return ReportSteps()


class MusicgenMusic:
    """Runs MusicGen in a worker thread, one piece at a time."""

    def __init__(self, model: Any, tokenizer: Any, name: str, guidance: float) -> None:
        self.model, self.tokenizer, self.name, self.guidance = model, tokenizer, name, guidance
        self.sampling_rate = int(model.audio_encoder.config.sampling_rate)
        self.frame_rate = float(model.audio_encoder.config.frame_rate)
        self._lock = threading.Lock()

    async def generate(self, request: MusicRequest, progress: Progress) -> list[Artifact]:
        """One WAV of `request.duration_s` seconds at the model's own rate (32 kHz for MusicGen)."""
        return await asyncio.to_thread(self._run, request, progress)

    def _run(self, request: MusicRequest, progress: Progress) -> list[Artifact]:
        import torch
        from transformers import StoppingCriteriaList

        steps = max(1, round(request.duration_s * self.frame_rate))
        guidance = self.guidance if request.guidance is None else request.guidance
        prompt = f"{request.prompt}, {request.tempo} bpm" if request.tempo else request.prompt
        inputs = self.tokenizer([prompt], return_tensors="pt", padding=True).to(self.model.device)
        with self._lock, hf.RNG_LOCK, torch.inference_mode():
            progress(0.0, "starting")
            torch.manual_seed(request.seed)  # under the RNG lock: the same seed gives the same piece
            audio = self.model.generate(**inputs, do_sample=True, guidance_scale=guidance or None, max_new_tokens=steps,
                                        stopping_criteria=StoppingCriteriaList([step_reporter(progress, steps)]))  # fmt: skip
        progress(0.95, "writing the WAV")
        samples = audio[0].float().cpu().numpy()  # (channels, samples)
        samples = samples[0] if samples.shape[0] == 1 else samples.T
        samples = samples[: int(request.duration_s * self.sampling_rate)]
        peak = float(np.abs(samples).max()) if samples.size else 0.0
        if peak > 1.0:  # MusicGen can overshoot full scale; scale rather than clip
            samples = samples / peak
        metadata = provenance(request.prompt, request.seed, "musicgen", model=self.name, duration=f"{request.duration_s:g}s",
                              guidance=guidance, tempo=request.tempo)  # fmt: skip
        data = wav_bytes(samples.astype(np.float32), self.sampling_rate, metadata)
        progress(1.0, "done")
        return [Artifact(data, "audio/wav", f"atelier-{request.seed}.wav", metadata)]

    async def close(self) -> None:
        """Nothing to release beyond the process."""


def load(config: BackendConfig) -> MusicgenMusic:
    """Load the model and its text tokenizer (blocking: call it off the event loop)."""
    from transformers import MusicgenForConditionalGeneration

    name, tokenizer, model = hf.load_with_tokenizer(config, "musicgen music", MusicgenForConditionalGeneration, "MusicGen model")
    return MusicgenMusic(model, tokenizer, name, float(config.options.get("guidance", DEFAULT_GUIDANCE)))


async def create(config: BackendConfig) -> MusicgenMusic:
    """Factory for music `type: musicgen` (options: guidance)."""
    hf.check_options(config.options, OPTIONS, "musicgen")
    return await asyncio.to_thread(load, config)
