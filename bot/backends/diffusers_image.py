"""The `diffusers` ImageBackend: text-to-image pipelines (SD-Turbo, SDXL, SD 1.5, FLUX…) by hub id or local folder.

Picture i of a request starts from noise drawn on the CPU from seed + i, so a seed gives the same
picture on any device and a re-roll with `--seed` repeats it. Variations start from that same noise
moved a little toward noise from the variation number, which keeps the composition and changes details.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from typing import Any

import numpy as np

from bot.backends import hf
from bot.backends.media import ImageRequest, Progress
from bot.backends.provenance import png_bytes, provenance
from bot.config import BackendConfig
from bot.errors import BackendFailed
from bot.messages import Artifact

log = logging.getLogger(__name__)
# How far a variation's starting noise moves toward its own noise (0: the same picture, 1: a new one).
VARIATION_AMOUNT = 0.25
FEW_STEP_MARKERS = ("turbo", "schnell", "lcm", "lightning", "hyper")
OPTIONS = {"steps", "guidance"}


def default_steps(model: str) -> tuple[int, float]:
    """(steps, guidance) suited to the model family: distilled few-step models want 4 steps and no guidance."""
    return (4, 0.0) if any(marker in model.lower() for marker in FEW_STEP_MARKERS) else (25, 7.0)


def slerp(a: Any, b: Any, amount: float) -> Any:
    """Spherical interpolation between two noise tensors, which keeps the result's spread like real noise."""
    import torch

    flat_a, flat_b = a.flatten(), b.flatten()
    cos = torch.clamp(torch.dot(flat_a, flat_b) / (flat_a.norm() * flat_b.norm()), -1.0, 1.0)
    angle = torch.arccos(cos)
    if angle.abs() < 1e-4:
        return a
    return (torch.sin((1 - amount) * angle) * a + torch.sin(amount * angle) * b) / torch.sin(angle)


class DiffusersImage:
    """Runs a diffusers pipeline in a worker thread, one request at a time."""

    def __init__(self, pipeline: Any, name: str, device: str, steps: int, guidance: float) -> None:
        self.pipeline, self.name, self.device = pipeline, name, device
        self.steps, self.guidance = steps, guidance
        self._accepts = set(inspect.signature(pipeline.__call__).parameters)
        unet = getattr(pipeline, "unet", None)
        # Our own starting noise needs the UNet latent layout; other families (FLUX packs its latents) use generators.
        self._latent_channels: int | None = unet.config.in_channels if unet is not None else None
        self.supports_variations = self._latent_channels is not None
        self._lock = threading.Lock()

    async def generate(self, request: ImageRequest, progress: Progress) -> list[Artifact]:
        """`request.n` PNGs; progress after every denoising step, and a cancelled job stops at the next step."""
        return await asyncio.to_thread(self._run, request, progress)

    def _run(self, request: ImageRequest, progress: Progress) -> list[Artifact]:
        import torch

        steps = request.steps or self.steps
        guidance = self.guidance if request.guidance is None else request.guidance
        seeds = [request.seed if request.variation else request.seed + i for i in range(request.n)]

        def on_step(pipeline: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            progress((step + 1) / steps, f"step {step + 1}/{steps}")  # raises JobCancelled once the job is cancelled
            return tensors

        arguments: dict[str, Any] = {
            "prompt": request.prompt, "num_inference_steps": steps, "guidance_scale": guidance, "height": request.height,
            "width": request.width, "num_images_per_prompt": request.n, "output_type": "np", "callback_on_step_end": on_step,
        }  # fmt: skip
        if request.negative and "negative_prompt" in self._accepts:
            arguments["negative_prompt"] = request.negative
        if self._latent_channels is not None:
            arguments["latents"] = torch.cat([self._noise(request, seed, i) for i, seed in enumerate(seeds)])
        # Also for the noise that ancestral and few-step schedulers add at every step.
        arguments["generator"] = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
        with self._lock, torch.inference_mode():
            progress(0.0, "starting")
            output = self.pipeline(**{key: value for key, value in arguments.items() if key in self._accepts})
        # A pipeline that ships a safety checker (SD 1.5) flags pictures it finds explicit: a second check after moderation.
        flagged = getattr(output, "nsfw_content_detected", None) or [False] * len(output.images)
        artifacts = [self._artifact(request, np.asarray(image), seed, i, steps, guidance)
                     for i, (image, seed, bad) in enumerate(zip(output.images, seeds, flagged)) if not bad]  # fmt: skip
        if not artifacts:
            raise BackendFailed("The model's safety checker withheld that picture; try a different prompt.")
        return artifacts

    def _noise(self, request: ImageRequest, seed: int, index: int) -> Any:
        import torch

        scale = getattr(self.pipeline, "vae_scale_factor", 8)
        shape = (1, self._latent_channels or 4, request.height // scale, request.width // scale)
        noise = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed))
        if request.variation:
            other = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(request.variation + index))
            noise = slerp(noise, other, VARIATION_AMOUNT)
        return noise.to(self.device, self.pipeline.unet.dtype)

    def _artifact(self, request: ImageRequest, image: np.ndarray, seed: int, index: int, steps: int, guidance: float) -> Artifact:
        pixels = (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)
        extra = {"variation": str(request.variation + index)} if request.variation else {}
        metadata = provenance(request.prompt, seed, "diffusers", model=self.name, negative=request.negative,
                              size=f"{request.width}x{request.height}", steps=steps, guidance=guidance, **extra)  # fmt: skip
        name = f"atelier-{seed}-v{request.variation + index}.png" if request.variation else f"atelier-{seed}.png"
        return Artifact(png_bytes(pixels, metadata), "image/png", name, metadata)

    async def close(self) -> None:
        """Nothing to release beyond the process."""


def load(config: BackendConfig) -> DiffusersImage:
    """Load the pipeline (blocking: call it off the event loop)."""
    from diffusers import DiffusionPipeline

    source, device, dtype = hf.placement(config, "diffusers image")
    pipeline = hf.load_pretrained(DiffusionPipeline, source, "diffusers pipeline", torch_dtype=dtype)
    pipeline.to(device)
    pipeline.set_progress_bar_config(disable=True)
    steps, guidance = default_steps(source.name)
    return DiffusersImage(pipeline, source.name, device, int(config.options.get("steps", steps)), float(config.options.get("guidance", guidance)))


async def create(config: BackendConfig) -> DiffusersImage:
    """Factory for image `type: diffusers` (options: steps, guidance)."""
    hf.check_options(config.options, OPTIONS, "diffusers")
    return await asyncio.to_thread(load, config)
