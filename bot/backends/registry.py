"""Maps a config `type` to a backend factory; built-ins plus plugins from the `bot.backends` entry points."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Literal

from bot.backends.base import BackendLoadError
from bot.config import BackendConfig, BackendsSection

log = logging.getLogger(__name__)

Kind = Literal["text", "image", "music"]
Factory = Callable[[BackendConfig], Awaitable[Any]]

# The offline, CPU-only backends that ship with Atelier (the usual fallbacks).
EMBEDDED = frozenset({"markov", "procedural", "algorithmic"})
# Imported lazily so a bot that never uses a heavy backend never imports torch for it.
BUILTIN: dict[tuple[str, str], str] = {
    ("text", "markov"): "bot.backends.markov:create",
    ("text", "openai"): "bot.backends.openai_text:create",
    ("text", "transformers"): "bot.backends.transformers_text:create",
    ("image", "procedural"): "bot.backends.procedural:create",
    ("image", "diffusers"): "bot.backends.diffusers_image:create",
    ("image", "openai"): "bot.backends.remote_media:create_image",
    ("music", "algorithmic"): "bot.backends.algorithmic:create",
    ("music", "musicgen"): "bot.backends.musicgen:create",
    ("music", "remote"): "bot.backends.remote_media:create_music",
}


@dataclass(frozen=True, slots=True)
class BackendStatus:
    """Which backend of a kind is active, and why (the line /status shows)."""

    kind: str
    configured: str
    active: str | None
    reason: str = ""
    model: str = ""  # what the active backend runs, when that says more than its type

    @property
    def uses_fallback(self) -> bool:
        """True when the configured backend failed and another took over."""
        return self.active is not None and self.active != self.configured

    def describe(self) -> str:
        """One line for /status."""
        if self.active is None:
            return f"{self.kind}: unavailable ({self.reason})"
        active = f"{self.active} ({self.model})" if self.model else self.active
        if self.uses_fallback:
            return f"{self.kind}: {active} (fallback; {self.configured} failed: {self.reason})"
        return f"{self.kind}: {active}"


def _resolve(target: str) -> Factory:
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def factory_for(kind: str, type_name: str) -> Factory | None:
    """The factory for `type_name` of `kind`, from the built-ins or an installed plugin."""
    if (kind, type_name) in BUILTIN:
        return _resolve(BUILTIN[(kind, type_name)])
    for point in entry_points(group="bot.backends"):
        if point.name == f"{kind}.{type_name}":
            return point.load()
    return None


async def load(kind: Kind, config: BackendConfig) -> tuple[Any | None, BackendStatus]:
    """Load the configured backend, walking its fallback chain; never raises."""
    reasons: list[str] = []
    current: BackendConfig | None = config
    while current is not None:
        factory = factory_for(kind, current.type)
        try:
            if factory is None:
                raise BackendLoadError(f"no {kind} backend of type '{current.type}' is installed")
            backend = await factory(current)
        except Exception as error:  # a broken plugin must not stop the bot; we fall back instead
            # Our own load errors are written for users; anything else may carry hosts, paths or
            # keys, so chat and /status get only its kind and the log gets the details.
            if isinstance(error, BackendLoadError):
                reason = str(error)
                # INFO: /status and the user's one-time notice already say it; at WARNING the console
                # chat would open on what looks like an error for an expected offline fallback.
                log.info("%s backend '%s' could not be loaded: %s", kind, current.type, reason)
            else:
                reason = f"it failed to load ({error.__class__.__name__}; details in the log)"
                log.warning("%s backend '%s' could not be loaded", kind, current.type, exc_info=error)
            reasons.append(reason)
            current = current.fallback
            continue
        name = str(getattr(backend, "name", ""))
        model = name if name not in ("", current.type) else ""
        return backend, BackendStatus(kind, config.type, current.type, "; ".join(reasons), model)
    return None, BackendStatus(kind, config.type, None, "; ".join(reasons))


async def load_configured(backends: BackendsSection) -> tuple[Any | None, list[BackendStatus], Any | None, Any | None]:
    """The text, image and music backends (each down its fallback chain) and the three statuses."""
    text, text_status = await load("text", backends.text)
    image, image_status = await load("image", backends.image)
    music, music_status = await load("music", backends.music)
    return text, [text_status, image_status, music_status], image, music
