"""`python -m bot models list | download`: the configured models, where they are, and fetching them.

Downloads go through the Hugging Face hub client (`huggingface_hub.snapshot_download`, with its own
progress bars) into its standard cache, where the backends look first; `--to DIR` puts each model
in a folder instead, to carry to a machine without network and name in `model:`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.config import BackendConfig, Config
from bot.errors import first_line

KINDS = ("text", "image", "music")
# Types whose `model` is a hub id or folder this machine loads (the others call a server or need none).
LOCAL_MODEL_TYPES = frozenset({"transformers", "diffusers", "musicgen"})
# Weights and configs only: a hub repo may also hold other formats of the same model (ONNX, GGUF,
# original checkpoints), several GB the loaders never read.
WANTED_FILES = ("*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.py", "tokenizer*", "*.jinja")
DOWNLOAD_COMMAND = "python -m bot models download"


class ModelsError(RuntimeError):
    """A model could not be listed or downloaded; the message says what to do."""


@dataclass(frozen=True, slots=True)
class ConfiguredModel:
    """One model the config names: for which kind, by which backend type, and where it stands here."""

    kind: str
    backend: str
    model: str
    state: str  # "folder", "cached", "missing"
    size_bytes: int = 0

    def line(self) -> str:
        """One row of `models list`."""
        where = {"folder": "local folder", "cached": "in the model cache", "missing": f"missing: {DOWNLOAD_COMMAND} {self.kind}"}[self.state]
        size = f", {human_size(self.size_bytes)}" if self.size_bytes else ""
        return f"{self.kind:<6} {self.backend:<13} {self.model}  ({where}{size})"


def human_size(size: int) -> str:
    """1234567 → "1.2 MB"."""
    if size < 1000:
        return f"{size} B"
    scaled = size / 1000
    for unit in ("kB", "MB"):
        if scaled < 1000:
            return f"{scaled:.1f} {unit}"
        scaled /= 1000
    return f"{scaled:.1f} GB"


def _chain(backend: BackendConfig | None) -> Iterator[BackendConfig]:
    while backend is not None:
        yield backend
        backend = backend.fallback


def _folder_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def _cached_size(repo_id: str) -> int | None:
    """Bytes of a hub repo in the local cache, or None when it is not there."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        cache = scan_cache_dir()
    except CacheNotFound:
        return None
    for repo in cache.repos:
        if repo.repo_id == repo_id and repo.repo_type == "model" and repo.nb_files:
            return int(repo.size_on_disk)
    return None


def configured(config: Config, kinds: Sequence[str] = KINDS) -> list[ConfiguredModel]:
    """Every model the config names for these kinds (fallbacks included), and whether it is here."""
    found = []
    for kind in kinds:
        for backend in _chain(getattr(config.backends, kind)):
            if backend.type not in LOCAL_MODEL_TYPES or not backend.model:
                continue
            path = Path(backend.model).expanduser()
            if path.is_dir():
                found.append(ConfiguredModel(kind, backend.type, backend.model, "folder", _folder_size(path)))
                continue
            size = _cached_size(backend.model)
            found.append(ConfiguredModel(kind, backend.type, backend.model, "cached" if size else "missing", size or 0))
    return found


def list_lines(config: Config) -> list[str]:
    """What `models list` prints."""
    models = configured(config)
    if not models:
        return ["No downloadable models are configured: chat, pictures and music use the embedded generators or a server."]
    lines = [model.line() for model in models]
    missing = [model for model in models if model.state == "missing"]
    if missing:
        kinds = sorted({model.kind for model in missing})
        lines.append(f"{len(missing)} missing; `{DOWNLOAD_COMMAND} {kinds[0] if len(kinds) == 1 else 'all'}` fetches them.")
    return lines


def download(config: Config, what: str, to: Path | None = None) -> list[str]:
    """Fetch the models of `what` (a kind or "all"); return one line per model fetched."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    from bot.backends.hf import hub_reachable, offline

    kinds = KINDS if what == "all" else (what,)
    wanted = [model for model in configured(config, kinds) if model.state != "folder"]
    if not wanted:
        return [f"Nothing to download: no {'' if what == 'all' else what + ' '}model in the config comes from the model hub."]
    if offline():
        raise ModelsError("HF_HUB_OFFLINE is set, so nothing can be downloaded; unset it, or download on another machine with --to DIR")
    if not hub_reachable():
        raise ModelsError("the model hub cannot be reached from here; on a machine with network run "
                          f"`{DOWNLOAD_COMMAND} {what} --to DIR`, copy DIR here and set each model: to its folder")  # fmt: skip
    done = []
    for model in dict.fromkeys(wanted):
        target = to / model.model.replace("/", "--") if to is not None else None
        try:
            folder = snapshot_download(model.model, local_dir=target, allow_patterns=list(WANTED_FILES))
        except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as error:
            raise ModelsError(f"could not download {model.model} ({first_line(error)})") from None
        size = human_size(_folder_size(Path(folder)))
        where = f"; set `model: {folder}` for the {model.kind} backend there" if to is not None else ""
        done.append(f"{model.kind}: {model.model} ready in {folder} ({size}){where}")
    return done
