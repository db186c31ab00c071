"""The act classifier: what a request asks to do, read with the people in it masked.

all-MiniLM-L6-v2's lower layers, frozen, under a tuned top (its last layers and a label layer)
that ships in git (`moderation/model/acts.pt`, built by `python -m moderation train`). Besides a
calibrated probability per act, each reading carries its *evidence*: how close the text comes to
a harmful request the model was trained on. Unfamiliar text (code, another language, an artist's
name) is far from all of them, and far is not harmful.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from moderation.readings import LABELS, Reading, describe_probabilities  # noqa: F401 - their home before; imported from here too
from moderation.serving import (  # noqa: F401 - training and tests import these from here
    MAX_TOKENS,
    MODEL_FILE,
    ActModelError,
    AdminExamples,
    Head,
    default_model_path,
    encoder_fingerprint,
)

log = logging.getLogger(__name__)

TUNED_LAYERS = 2


def additive_mask(mask: torch.Tensor) -> torch.Tensor:
    """(batch, tokens) 1/0 → the (batch, 1, 1, tokens) additive mask BERT layers take."""
    return (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min


class Encoder:
    """MiniLM's lower layers, frozen: token states for the tuned top to read.

    Runs the transformer directly through `transformers` (the sentence-transformers wrapper would cost
    ~10 ms of bookkeeping per call and ~40 MiB of imports, and only its tokenizer call was used).
    """

    def __init__(self, model_path: Path) -> None:
        try:
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()  # "Loading weights" bars would land in the console chat
            self.tokenizer = AutoTokenizer.from_pretrained(str(model_path), local_files_only=True)
            bert = AutoModel.from_pretrained(str(model_path), local_files_only=True)
        except Exception as error:
            raise ActModelError(f"could not load the embedding model at {model_path}: {error}") from error
        self.max_tokens = MAX_TOKENS
        bert.eval()
        keep = len(bert.encoder.layer) - TUNED_LAYERS
        # The original top layers are where training starts; the encoder itself stops below them.
        self.top_layers = nn.ModuleList(list(bert.encoder.layer[keep:]))
        bert.encoder.layer = bert.encoder.layer[:keep]
        self._bert = bert
        self.dim = int(bert.config.hidden_size)
        self.name = model_path.name if model_path.name != "model" else model_path.parent.name
        self.fingerprint = encoder_fingerprint(model_path)
        self.lock = threading.Lock()

    def lower_states(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded (n, tokens, dim) states below the tuned layers and the (n, tokens) mask."""
        features = self.tokenizer(list(texts), padding=True, truncation="longest_first", max_length=self.max_tokens, return_tensors="pt")
        inputs = {key: features[key] for key in ("input_ids", "attention_mask", "token_type_ids") if key in features}
        with torch.no_grad():  # not inference_mode: training reuses these states under autograd
            states = self._bert(**inputs).last_hidden_state
        return states, features["attention_mask"]


class TunedTop(nn.Module):
    """The last BERT layers (tuned copies) → mean pooling → unit length → one logit per act."""

    def __init__(self, layers: nn.ModuleList, labels: Sequence[str], dim: int) -> None:
        super().__init__()
        self.layers = layers
        self.labels = tuple(labels)
        self.out = nn.Linear(dim, len(self.labels))

    def embed(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Unit-length (batch, dim) vectors from lower-layer states and the token mask."""
        attention = additive_mask(mask)
        for layer in self.layers:
            result = layer(states, attention_mask=attention)
            states = result[0] if isinstance(result, tuple) else result
        weights = mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return nn.functional.normalize(pooled, dim=-1)

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Logits (batch, labels)."""
        return self.out(self.embed(states, mask))  # type: ignore[no-any-return]


@dataclass
class ActModel:
    """The shipped top on the frozen encoder, in torch: what training builds and `export` turns into `ServedActs`."""

    encoder: Encoder
    top: TunedTop
    temperature: float
    bank: torch.Tensor  # (n, dim) unit vectors of harmful training requests
    evidence_floor: float  # below this similarity to every harmful request, the text is unfamiliar
    meta: dict[str, object] = field(default_factory=dict)
    admin: AdminExamples = field(default_factory=AdminExamples)

    @property
    def labels(self) -> tuple[str, ...]:
        """The acts, "none" first."""
        return self.top.labels

    @property
    def name(self) -> str:
        """The encoder's name, for /status."""
        return self.encoder.name

    @classmethod
    def load(cls, path: Path | None = None, model_path: Path | None = None) -> ActModel:
        """Read the shipped top (`python -m moderation train` writes it) onto the frozen encoder."""
        path = path or MODEL_FILE
        encoder = shared_encoder(model_path or default_model_path())
        if not path.exists():
            raise ActModelError(f"the moderation model {path} is missing; rebuild it with `python -m moderation train`")
        try:
            data = torch.load(path, weights_only=True)
            top = TunedTop(copy.deepcopy(encoder.top_layers), data["labels"], encoder.dim)
            top.load_state_dict({key: value.float() for key, value in data["state"].items()})
        except Exception as error:
            raise ActModelError(f"the moderation model {path} is unreadable ({error}); rebuild it with `python -m moderation train`") from error
        trained_on = data.get("meta", {}).get("encoder")
        if trained_on is not None and trained_on != encoder.fingerprint:
            raise ActModelError(
                f"the moderation model {path} was tuned on another encoder than {encoder.name}; rebuild it with `python -m moderation train`"
            )
        return cls(encoder, top.eval(), float(data["temperature"]), data["bank"].float(), float(data["evidence_floor"]), dict(data.get("meta", {})))

    def head(self) -> Head:
        """Everything after the unit vector, as plain arrays (what serving needs besides the network)."""
        return Head(self.labels, self.top.out.weight.detach().numpy().copy(), self.top.out.bias.detach().numpy().copy(),
                    self.temperature, self.bank.numpy().copy(), self.evidence_floor,
                    {**self.meta, "encoder_name": self.encoder.name})  # fmt: skip

    def vectors(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """Unit vectors in the tuned space for already masked texts."""
        parts = []
        with self.encoder.lock, torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                states, mask = self.encoder.lower_states(texts[start : start + batch_size])
                parts.append(self.top.embed(states, mask))
        return torch.cat(parts) if parts else torch.zeros(0, self.encoder.dim)

    def add_examples(self, examples: Mapping[str, Sequence[str]]) -> None:
        """Admin examples {act: [texts]} (already masked): a request close to one takes its act, no retraining."""
        self.admin = AdminExamples.of(examples, lambda texts: self.vectors(texts).numpy(), self.admin)

    def classify(self, masked_texts: Sequence[str]) -> list[Reading]:
        """A reading per (normalised, masked) text; runs on the calling thread."""
        if not masked_texts:
            return []
        return self.head().readings(self.vectors(masked_texts).numpy(), self.admin)


_ENCODERS: dict[Path, Encoder] = {}
_ENCODERS_LOCK = threading.Lock()


def shared_encoder(model_path: Path) -> Encoder:
    """One encoder per model folder per process: tests and restarts in one process share it."""
    with _ENCODERS_LOCK:
        encoder = _ENCODERS.get(model_path)
        if encoder is None:
            encoder = _ENCODERS[model_path] = Encoder(model_path)
        return encoder
