"""`procedural`: the embedded image backend, a compositional pattern-producing network (CPPN) in numpy.

A small random MLP maps each pixel's coordinates plus a latent vector to weights over a palette.
The network comes from the seed, the latent vector from the prompt, and colour words in the prompt
choose the palette, so (prompt, seed, size) always gives the same picture, and offline. numpy, not
torch: a bot that generates nothing else locally then never loads torch (~190 MiB).
"""

from __future__ import annotations

import asyncio
import colorsys
import hashlib
import re

import numpy as np

from bot.backends.media import ImageRequest, Progress
from bot.backends.provenance import png_bytes, provenance
from bot.config import BackendConfig
from bot.messages import Artifact

LATENT = 8
HIDDEN = 24
LAYERS = 4
STEPS = 8
# How far a variation's network weights move, relative to their spread.
VARIATION_AMOUNT = 0.2
PALETTE_SIZE = 5
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (200, 30, 40), "crimson": (160, 20, 50), "orange": (240, 130, 30), "yellow": (245, 215, 60),
    "gold": (212, 175, 55), "green": (50, 150, 70), "teal": (30, 130, 130), "cyan": (60, 200, 220),
    "blue": (40, 80, 200), "navy": (20, 30, 90), "turquoise": (60, 200, 180), "purple": (120, 50, 160),
    "violet": (140, 80, 200), "magenta": (200, 40, 160), "pink": (240, 140, 180), "brown": (120, 80, 40),
    "black": (15, 15, 20), "white": (245, 245, 240), "grey": (128, 128, 128), "gray": (128, 128, 128),
    "silver": (190, 195, 200), "beige": (225, 210, 180),
}
SCENES: dict[str, tuple[str, ...]] = {
    "sunset": ("orange", "pink", "purple"), "ocean": ("navy", "blue", "turquoise"), "sea": ("navy", "blue", "teal"),
    "forest": ("green", "brown", "teal"), "night": ("navy", "black", "violet"), "fire": ("red", "orange", "yellow"),
    "snow": ("white", "silver", "cyan"), "desert": ("beige", "orange", "brown"), "space": ("black", "navy", "violet"),
    "autumn": ("orange", "brown", "crimson"), "spring": ("pink", "green", "yellow"), "neon": ("magenta", "cyan", "violet"),
}
_WORD = re.compile(r"\w+")


def _digest(*parts: str) -> bytes:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()


def prompt_latent(prompt: str, negative: str) -> np.ndarray:
    """A point in latent space for the prompt (the negative prompt pushes away from its own point)."""
    def point(text: str) -> np.ndarray:
        seed = int.from_bytes(_digest(" ".join(_WORD.findall(text.lower())))[:8], "little")
        return np.random.default_rng(seed).standard_normal(LATENT, dtype=np.float32)
    latent = point(prompt)
    if negative.strip():
        latent = latent - 0.5 * point(negative)
    return latent


def palette_for(prompt: str, negative: str, seed: int) -> np.ndarray:
    """PALETTE_SIZE colours: named colours and scenes first, then a harmony around a hashed hue."""
    banned = set(_WORD.findall(negative.lower()))
    names: list[str] = []
    for word in _WORD.findall(prompt.lower()):
        for name in (word,) if word in COLOURS else SCENES.get(word, ()):
            if name not in banned and name not in names:
                names.append(name)
    colours = [np.array(COLOURS[name], dtype=np.float32) / 255.0 for name in names[:PALETTE_SIZE]]
    rng = np.random.default_rng(int.from_bytes(_digest(prompt, str(seed))[:8], "little"))
    base = rng.random()
    while len(colours) < PALETTE_SIZE:
        if names:  # tints and shades of the named colours keep the prompt's mood
            source = colours[len(colours) % len(names)]
            colours.append(np.clip(source * rng.uniform(0.4, 1.3) + rng.normal(0, 0.05, 3), 0, 1).astype(np.float32))
        else:
            hue = (base + rng.choice([0.0, 0.08, 0.5, 0.58, 0.33]) + rng.normal(0, 0.02)) % 1.0
            rgb = colorsys.hsv_to_rgb(hue, rng.uniform(0.4, 0.9), rng.uniform(0.3, 1.0))
            colours.append(np.array(rgb, dtype=np.float32))
    return np.stack(colours)


class CPPN:
    """The network for one seed: coordinates + latent → palette weights."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        sizes = [3 + LATENT] + [HIDDEN] * LAYERS
        self.weights = [rng.standard_normal((a, b), dtype=np.float32) * np.float32(1.6 / a**0.5) for a, b in zip(sizes, sizes[1:])]
        self.out = rng.standard_normal((HIDDEN, PALETTE_SIZE), dtype=np.float32) * np.float32(1.8)
        self.sharpness = np.float32(1.5 + 3.0 * rng.random())

    def varied(self, variation: int, amount: float = VARIATION_AMOUNT) -> CPPN:
        """A close relative of this network: the same shapes, nudged, so the picture stays recognisable."""
        rng = np.random.default_rng(variation)
        twin = CPPN.__new__(CPPN)
        twin.weights = [w + rng.standard_normal(w.shape, dtype=np.float32) * w.std() * np.float32(amount) for w in self.weights]
        twin.out = self.out + rng.standard_normal(self.out.shape, dtype=np.float32) * self.out.std() * np.float32(amount)
        twin.sharpness = self.sharpness
        return twin

    def weights_for(self, coords: np.ndarray, latent: np.ndarray) -> np.ndarray:
        """Softmax palette weights for N×3 coordinates (x, y, r)."""
        hidden = np.concatenate([coords, np.broadcast_to(latent, (coords.shape[0], LATENT))], axis=1)
        for index, weight in enumerate(self.weights):
            hidden = hidden @ weight
            # Alternating sine and tanh gives both stripes and soft blobs.
            hidden = np.sin(hidden) if index % 2 == 0 else np.tanh(hidden)
        logits = hidden @ self.out * self.sharpness
        logits -= logits.max(axis=1, keepdims=True)
        weights = np.exp(logits)
        return weights / weights.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]


def render(request: ImageRequest, index: int, progress: Progress) -> Artifact:
    """Draw picture `index` of a request, reporting STEPS progress steps."""
    seed = request.seed if request.variation else request.seed + index
    network = CPPN(seed).varied(request.variation + index) if request.variation else CPPN(seed)
    latent = prompt_latent(request.prompt, request.negative)
    palette = palette_for(request.prompt, request.negative, seed)
    scale = max(request.width, request.height)
    xs = (np.arange(request.width, dtype=np.float32) * 2 - request.width + 1) / scale
    ys = (np.arange(request.height, dtype=np.float32) * 2 - request.height + 1) / scale
    pixels = np.empty((request.height, request.width, 3), dtype=np.uint8)
    rows = -(-request.height // STEPS)
    for step in range(STEPS):
        band = ys[step * rows : (step + 1) * rows]
        if len(band) == 0:
            continue
        grid_y, grid_x = np.meshgrid(band, xs, indexing="ij")
        coords = np.stack([grid_x, grid_y, np.sqrt(grid_x**2 + grid_y**2)], axis=-1).reshape(-1, 3)
        colour = network.weights_for(coords * np.float32(2.0), latent) @ palette
        pixels[step * rows : step * rows + len(band)] = np.clip((colour.reshape(len(band), request.width, 3) * 255).round(), 0, 255).astype(np.uint8)
        done = (index * STEPS + step + 1) / (request.n * STEPS)
        progress(done, f"image {index + 1}/{request.n}, step {step + 1}/{STEPS}")
    extra = {"variation": str(request.variation + index)} if request.variation else {}
    metadata = provenance(request.prompt, seed, "procedural", negative=request.negative, size=f"{request.width}x{request.height}", **extra)
    name = f"atelier-{seed}-v{request.variation + index}.png" if request.variation else f"atelier-{seed}.png"
    return Artifact(png_bytes(pixels, metadata), "image/png", name, metadata)


class ProceduralBackend:
    """The `procedural` ImageBackend."""

    name = "procedural"
    supports_variations = True
    # Options of /imagine this generator has no use for: the user is told once, not left guessing.
    ignored_options = frozenset({"steps", "guidance"})

    async def generate(self, request: ImageRequest, progress: Progress) -> list[Artifact]:
        """Render `request.n` pictures in a worker thread."""
        return await asyncio.to_thread(lambda: [render(request, i, progress) for i in range(request.n)])

    async def close(self) -> None:
        """Nothing to release."""


async def create(config: BackendConfig) -> ProceduralBackend:
    """Factory for `type: procedural`."""
    return ProceduralBackend()
