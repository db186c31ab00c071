"""Loading Hugging Face models for the real backends: where from, on which device, in which dtype.

A model is a local folder or a hub id. A hub download is attempted only for a hub id, only when
HF_HUB_OFFLINE is not set, and only after a quick check that the hub answers, so an offline bot
falls back in seconds instead of waiting out the hub client's retries.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bot.backends.base import BackendLoadError
from bot.errors import first_line

log = logging.getLogger(__name__)
HUB_PROBE_TIMEOUT_S = 3.0
# Seeding torch's global generator and sampling from it must not interleave between backends that share it.
RNG_LOCK = threading.Lock()
DTYPES = ("float32", "float16", "bfloat16")
# What /status and the logs suggest when a model is not on this machine.
FETCH_HINT = "fetch it with `python -m bot models download` (or --to DIR on a machine with network) or give a local folder"


@dataclass(frozen=True, slots=True)
class Source:
    """Where a model comes from: `name` for from_pretrained, and whether only local files may be used."""

    name: str
    local_only: bool
    is_folder: bool


def offline() -> bool:
    """True when HF_HUB_OFFLINE (or the older TRANSFORMERS_OFFLINE) asks for no hub access."""
    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on") for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def source_for(model: str | None, kind: str) -> Source:
    """A local folder as is; a hub id, cache-only when offline. BackendLoadError if `model` is unusable."""
    if not model:
        raise BackendLoadError(f"the {kind} backend needs `model:` (a hub id like org/name, or a local folder)")
    path = Path(model).expanduser()
    if path.is_dir():
        return Source(str(path), local_only=True, is_folder=True)
    if model.startswith(("/", ".", "~")) or model.count("/") > 1:  # a path, not an org/name hub id
        raise BackendLoadError(f"there is no model folder at {model}")
    return Source(model, local_only=offline(), is_folder=False)


def check_options(options: dict[str, Any], known: set[str], type_name: str) -> None:
    """Refuse options a backend does not know, so a typo is caught at start-up rather than silently ignored."""
    unknown = set(options) - known
    if unknown:
        raise BackendLoadError(f"unknown {type_name} option(s): {', '.join(sorted(unknown))} (known: {', '.join(sorted(known))})")


def hub_reachable() -> bool:
    """Whether the model hub accepts a connection within a few seconds (assumed behind a proxy, which we cannot probe)."""
    from huggingface_hub import constants

    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    parts = urlsplit(constants.ENDPOINT)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=HUB_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def load_pretrained(loader: Any, source: Source, what: str, **kwargs: Any) -> Any:
    """`loader.from_pretrained(source)`: the local cache first, the hub only when allowed and reachable."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # progress bars on stderr are noise in a server's log
    try:
        return loader.from_pretrained(source.name, local_files_only=True, **kwargs)
    except OSError as error:  # transformers' way of saying "not here"
        if source.is_folder:
            raise BackendLoadError(f"{source.name} does not hold a usable {what} ({first_line(error)})") from None
        if source.local_only:
            raise BackendLoadError(f"{source.name} is not in the local model cache and HF_HUB_OFFLINE is set; {FETCH_HINT}") from None
    except (ValueError, KeyError, TypeError) as error:  # files present but not a model this library can build
        raise BackendLoadError(f"{source.name} does not hold a usable {what} ({first_line(error)})") from None
    if not hub_reachable():
        raise BackendLoadError(f"{source.name} is not in the local model cache and the model hub is unreachable; {FETCH_HINT}")
    log.info("downloading %s %s from the model hub", what, source.name)
    try:
        return loader.from_pretrained(source.name, **kwargs)
    except OSError as error:
        raise BackendLoadError(f"could not download {source.name} ({first_line(error)})") from None


def placement(config: Any, kind: str) -> tuple[Source, str, Any]:
    """Where a backend's model comes from, and the device and dtype it runs in."""
    source = source_for(config.model, kind)
    device = pick_device(config.device)
    return source, device, pick_dtype(config.dtype, device)


def load_with_tokenizer(config: Any, kind: str, model_class: Any, what: str) -> tuple[str, Any, Any]:
    """(name, tokenizer, model) for a transformers model: resolved, on its device and dtype, in eval mode (blocking)."""
    from transformers import AutoTokenizer

    source, device, dtype = placement(config, kind)
    tokenizer = load_pretrained(AutoTokenizer, source, "tokenizer")
    model = load_pretrained(model_class, source, what, dtype=dtype)
    model.to(device).eval()
    return source.name, tokenizer, model


def pick_device(setting: str) -> str:
    """`auto` → cuda when a GPU is visible, else cpu; `cuda` without a GPU is a load error (so the fallback runs)."""
    import torch

    if setting == "cuda" and not torch.cuda.is_available():
        raise BackendLoadError("device: cuda was asked for, but no GPU is visible to this process")
    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return setting


def pick_dtype(setting: str | None, device: str) -> Any:
    """The torch dtype: as configured, else half precision on a GPU and float32 on a CPU."""
    import torch

    if setting is None:
        if device == "cpu":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if setting not in DTYPES:
        raise BackendLoadError(f"dtype must be one of {', '.join(DTYPES)}, not '{setting}'")
    return getattr(torch, setting)
