"""The top of MiniLM, fine-tuned on our exemplars: its last layers plus a label layer.

A frozen sentence embedding cannot tell "kill a python process" from "kill a person" well: both
sit near "kill". Tuning only the last transformer layers lets the model weigh words by their
context while training stays cheap: the frozen lower layers run once per exemplar, and only the
top layers run in the training loop.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

TUNED_LAYERS = 2
EPOCHS = 4
BATCH = 32
LAYER_LR = 1e-4
LABEL_LR = 1e-3
SEED = 0
# Joined exemplars: a long message is not harmful for being long, and one harmful ask inside
# friendly chatter is still harmful. Without these, length itself became a signal.
JOINED_HARMLESS = 2000
JOINED_HARMFUL = 1000
# Bump when training changes in a way the numbers above do not show, so cached models are retuned.
RECIPE_VERSION = 5


def recipe() -> str:
    """Everything about training besides the examples, for the cache key: change any, retune."""
    return (
        f"v{RECIPE_VERSION} layers={TUNED_LAYERS} epochs={EPOCHS} batch={BATCH} lr={LAYER_LR},{LABEL_LR} "
        f"seed={SEED} joined={JOINED_HARMLESS},{JOINED_HARMFUL}"
    )


def additive_mask(mask: torch.Tensor) -> torch.Tensor:
    """(batch, tokens) 1/0 → the (batch, 1, 1, tokens) additive mask BERT layers take."""
    return (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min


class TunedTop(nn.Module):
    """The last BERT layers (copies, tuned) → mean pooling → unit length → one logit per label."""

    def __init__(self, layers: nn.ModuleList, labels: Sequence[str], dim: int) -> None:
        super().__init__()
        self.layers = layers
        self.labels = tuple(labels)
        self.out = nn.Linear(dim, len(self.labels))

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Logits (batch, labels) from lower-layer states (batch, tokens, dim) and the token mask."""
        attention = additive_mask(mask)
        for layer in self.layers:
            result = layer(states, attention_mask=attention)
            states = result[0] if isinstance(result, tuple) else result
        weights = mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return self.out(nn.functional.normalize(pooled, dim=-1))  # type: ignore[no-any-return]

    def probabilities(self, states: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
        """(batch, labels) class probabilities."""
        with torch.inference_mode():
            return self.forward(states, mask).softmax(-1).float().numpy()  # type: ignore[no-any-return]

    def save(self, path: Path) -> None:
        """Write the tuned weights and labels to `path` (torch's format, tensors only)."""
        torch.save({"state": self.state_dict(), "labels": list(self.labels)}, path)

    @classmethod
    def load(cls, path: Path, layers: nn.ModuleList, dim: int) -> TunedTop:
        """Read weights written by `save` into copies of `layers`."""
        data = torch.load(path, weights_only=True)
        top = cls(copy.deepcopy(layers), data["labels"], dim)
        top.load_state_dict(data["state"])
        return top.eval()


def pad(states: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack per-text (tokens, dim) states into a padded batch and its mask."""
    longest = max(len(state) for state in states)
    batch = torch.zeros(len(states), longest, states[0].shape[-1])
    mask = torch.zeros(len(states), longest, dtype=torch.long)
    for row, state in enumerate(states):
        batch[row, : len(state)] = state.float()
        mask[row, : len(state)] = 1
    return batch, mask


def joined_exemplars(texts: Sequence[str], labels: Sequence[str]) -> tuple[list[str], list[str]]:
    """Extra training messages of 2-4 exemplars each: all harmless ("none"), or one harmful among harmless."""
    generator = np.random.default_rng(SEED)
    harmless = [text for text, label in zip(texts, labels, strict=True) if label == "none"]
    harmful = [(text, label) for text, label in zip(texts, labels, strict=True) if label != "none"]
    joined: list[str] = []
    joined_labels: list[str] = []
    if not harmless or not harmful:
        return joined, joined_labels
    for _ in range(JOINED_HARMLESS):
        parts = [harmless[i] for i in generator.integers(len(harmless), size=int(generator.integers(2, 5)))]
        joined.append(". ".join(parts))
        joined_labels.append("none")
    for _ in range(JOINED_HARMFUL):
        parts = [harmless[i] for i in generator.integers(len(harmless), size=int(generator.integers(1, 4)))]
        text, label = harmful[int(generator.integers(len(harmful)))]
        parts.insert(int(generator.integers(len(parts) + 1)), text)
        joined.append(". ".join(parts))
        joined_labels.append(label)
    return joined, joined_labels


def _batches(lengths: Sequence[int], generator: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of similar length, so little of each batch is padding."""
    order = np.argsort(np.asarray(lengths) + generator.random(len(lengths)) * 4, kind="stable")
    batches = [order[start : start + BATCH] for start in range(0, len(order), BATCH)]
    generator.shuffle(batches)  # type: ignore[arg-type]
    return batches


def train_top(
    states: Sequence[torch.Tensor], labels: Sequence[str], layers: nn.ModuleList, dim: int
) -> TunedTop:
    """Fine-tune copies of `layers` and a label layer on per-exemplar lower-layer states.

    Classes are weighted by the square root of their rarity: fully balanced weights let the small
    harmful labels outvote "none" on harmless look-alikes; no weighting misses harmful requests.
    """
    with torch.random.fork_rng():  # seeds dropout without disturbing anyone else's random numbers
        torch.manual_seed(SEED)
        return _train(states, labels, layers, dim)


def _train(states: Sequence[torch.Tensor], labels: Sequence[str], layers: nn.ModuleList, dim: int) -> TunedTop:
    generator = np.random.default_rng(SEED)
    names = sorted(set(labels))
    counts = {name: labels.count(name) for name in names}
    weights = torch.tensor([math.sqrt(len(labels) / (len(names) * counts[name])) for name in names])
    targets = torch.tensor([names.index(label) for label in labels])
    top = TunedTop(copy.deepcopy(layers), names, dim)
    optimiser = torch.optim.AdamW(
        [{"params": top.layers.parameters(), "lr": LAYER_LR}, {"params": top.out.parameters(), "lr": LABEL_LR}],
        weight_decay=0.01,
    )
    steps = EPOCHS * math.ceil(len(states) / BATCH)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=[LAYER_LR, LABEL_LR], total_steps=steps, pct_start=0.1
    )
    loss_of = nn.CrossEntropyLoss(weight=weights, label_smoothing=0.05)
    lengths = [len(state) for state in states]
    top.train()
    for _ in range(EPOCHS):
        for batch in _batches(lengths, generator):
            inputs, mask = pad([states[i] for i in batch])
            optimiser.zero_grad()
            loss = loss_of(top(inputs, mask), targets[batch])
            loss.backward()
            optimiser.step()
            schedule.step()
    return top.eval()
