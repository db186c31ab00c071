"""`python -m moderation train`: rebuild the shipped act model (moderation/model/acts.pt) from scratch.

Training data: the project's exemplars (moderation/exemplars/*.yaml, our own words, the only source
for deepfakes, NCII, voice clones and fakes of real people) plus public, permissively licensed
corpora of what a bot really receives (moderation/DATA.md: sources, versions, licences), prepared
as JSONL {"text", "label"} files in a data folder. Every text is masked as at run time, so the
model learns acts, not names. One tenth of each source (chosen by a hash of the text, so the split
never moves) is the development split: it calibrates the probabilities and sets the evidence
floor, and is never trained on. The public evaluation sets (../shared/eval) are never read here.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn

from moderation.acts import LABELS, MAX_TOKENS, MODEL_FILE, ActModel, Encoder, TunedTop, default_model_path, shared_encoder
from moderation.persons import mask_targets

log = logging.getLogger(__name__)

EXEMPLARS_DIR = Path(__file__).with_name("exemplars")
EPOCHS = 2
BATCH = 32
LAYER_LR = 1e-4
LABEL_LR = 1e-3
SEED = 0
DEV_SHARE = 10  # one text in ten is development data
# A source this large is sampled down: the model should not be mostly one corpus's voice.
PER_SOURCE_CAP = 2000
# Joined examples: a long message is not harmful for being long, and one harmful ask inside
# friendly chatter is still harmful.
JOINED_HARMLESS = 1500
JOINED_HARMFUL = 700
# Training reads at most this many tokens of a text: cost grows with length, and a long paste's
# first 64 tokens already say what kind of text it is (long messages are also judged in pieces).
TRAIN_TOKENS = 64
BANK_SIZE = 5000
# The evidence floor keeps this share of harmful development requests above it.
EVIDENCE_RECALL = 0.99
# A language the model sees only in harmful text becomes a sign of harm by itself ("hej jak sie
# masz" read as harassment): harmful lines of a language with fewer harmless lines than this are left out.
MIN_HARMLESS_PER_LANGUAGE = 150
# How strongly rare acts are weighted: (share of "none" / share of the act) ** this. 0.5 (square
# root) pushed unfamiliar text into harmful acts; 0 would miss the rare ones.
CLASS_WEIGHT_POWER = 0.35
# Templated sources (the same sentence frames with other groups) sampled harder than the rest.
SOURCE_CAPS = {"hatecheck_en": 1000, "hatecheck_multilingual": 1000}
RECIPE_VERSION = 8


@dataclass(frozen=True, slots=True)
class Example:
    """One training text with its act and where it came from."""

    text: str
    label: str
    source: str


def load_exemplars(directory: Path = EXEMPLARS_DIR) -> list[Example]:
    """Our own exemplars: every `*.yaml` file's `block` lines under its label, `allow` lines as "none"."""
    examples: dict[str, Example] = {}
    for path in sorted(directory.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        label = data.get("label")
        if label not in LABELS:
            raise ValueError(f"{path.name}: unknown label {label!r}; use one of {', '.join(LABELS)}")
        for text in data.get("block") or []:
            examples.setdefault(str(text).strip(), Example(str(text).strip(), label, f"exemplars/{path.stem}"))
        for text in data.get("allow") or []:
            examples.setdefault(str(text).strip(), Example(str(text).strip(), "none", f"exemplars/{path.stem}"))
    return list(examples.values())


def load_corpora(directory: Path) -> list[Example]:
    """The prepared public corpora: `*.jsonl` files of {"text", "label"} in `directory`."""
    examples: list[Example] = []
    for path in sorted(directory.glob("*.jsonl")):
        seen: set[str] = set()
        for line in path.read_text(encoding="utf-8").split("\n"):  # not splitlines: texts hold U+2028
            if not line.strip():
                continue
            row = json.loads(line)
            text, label = str(row.get("text", "")).strip(), row.get("label")
            if not text or label not in LABELS or text in seen:
                continue
            seen.add(text)
            examples.append(Example(text[:2000], label, path.stem))
    return examples


def _bucket(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def split(examples: Sequence[Example]) -> tuple[list[Example], list[Example]]:
    """(train, dev): one in DEV_SHARE by a hash of the text; big sources sampled down to PER_SOURCE_CAP."""
    train: list[Example] = []
    dev: list[Example] = []
    by_source: dict[str, list[Example]] = {}
    for example in examples:
        by_source.setdefault(example.source, []).append(example)
    for source, rows in sorted(by_source.items()):
        rows = sorted(rows, key=lambda row: _bucket(row.text))
        cap = SOURCE_CAPS.get(source, PER_SOURCE_CAP) * 10 // (DEV_SHARE - 1)
        if not source.startswith("exemplars/") and len(rows) > cap:
            rows = rows[:cap]
        for row in rows:
            (dev if _bucket(row.text) % DEV_SHARE == 0 else train).append(row)
    return train, dev


def language_of(text: str) -> str:
    """The language of a text (langdetect, seeded: the same answer every run), "?" when it cannot tell."""
    try:
        from langdetect import DetectorFactory, LangDetectException, detect
    except ImportError:
        raise SystemExit("moderation: training needs langdetect; run: .venv/bin/pip install 'langdetect>=1.0.9'") from None

    DetectorFactory.seed = 0
    try:
        return str(detect(text))
    except LangDetectException:
        return "?"


def balance_languages(examples: Sequence[Example]) -> tuple[list[Example], dict[str, int]]:
    """Leave out harmful lines in languages the harmless side barely has; return the rest and what was left out."""
    languages = [language_of(example.text) for example in examples]
    harmless = Counter(language for language, example in zip(languages, examples, strict=True) if example.label == "none")
    kept: list[Example] = []
    dropped: Counter[str] = Counter()
    for language, example in zip(languages, examples, strict=True):
        if example.label != "none" and harmless[language] < MIN_HARMLESS_PER_LANGUAGE and not example.source.startswith("exemplars/"):
            dropped[language] += 1
        else:
            kept.append(example)
    return kept, dict(dropped)


def joined_examples(examples: Sequence[Example], generator: np.random.Generator) -> list[Example]:
    """Extra messages of 2-4 texts each: all harmless ("none"), or one harmful among harmless ones."""
    harmless = [example.text for example in examples if example.label == "none" and len(example.text) < 400]
    harmful = [example for example in examples if example.label != "none" and len(example.text) < 400]
    joined: list[Example] = []
    if not harmless or not harmful:
        return joined
    for _ in range(JOINED_HARMLESS):
        parts = [harmless[i] for i in generator.integers(len(harmless), size=int(generator.integers(2, 5)))]
        joined.append(Example(". ".join(parts), "none", "joined"))
    for _ in range(JOINED_HARMFUL):
        parts = [harmless[i] for i in generator.integers(len(harmless), size=int(generator.integers(1, 4)))]
        harm = harmful[int(generator.integers(len(harmful)))]
        parts.insert(int(generator.integers(len(parts) + 1)), harm.text)
        joined.append(Example(". ".join(parts), harm.label, "joined"))
    return joined


def lower_states(encoder: Encoder, texts: Sequence[str], progress: Callable[[int, int], None], batch_size: int = 64) -> list[torch.Tensor]:
    """Unpadded lower-layer states per text in half precision, shortest first to waste no padding."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    found: dict[int, torch.Tensor] = {}
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        states, mask = encoder.lower_states([texts[i] for i in chunk])
        for row, index in enumerate(chunk):
            found[index] = states[row, : int(mask[row].sum())].half()
        progress(min(start + batch_size, len(order)), len(order))
    return [found[i] for i in range(len(texts))]


def pad(states: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack per-text (tokens, dim) states into a padded batch and its mask."""
    longest = max(len(state) for state in states)
    batch = torch.zeros(len(states), longest, states[0].shape[-1])
    mask = torch.zeros(len(states), longest, dtype=torch.long)
    for row, state in enumerate(states):
        batch[row, : len(state)] = state.float()
        mask[row, : len(state)] = 1
    return batch, mask


def _batches(lengths: Sequence[int], generator: np.random.Generator, size: int = BATCH) -> list[np.ndarray]:
    """Shuffled batches of similar length, so little of each batch is padding."""
    order = np.argsort(np.asarray(lengths) + generator.random(len(lengths)) * 4, kind="stable")
    batches = [order[start : start + size] for start in range(0, len(order), size)]
    generator.shuffle(batches)  # type: ignore[arg-type]
    return batches


def train_top(
    states: Sequence[torch.Tensor], labels: Sequence[str], encoder: Encoder, progress: Callable[[int, int], None]
) -> TunedTop:
    """Fine-tune copies of the top layers and a label layer on lower-layer states.

    Classes are weighted by a power of their rarity (CLASS_WEIGHT_POWER): fully balanced weights let
    the small harmful acts outvote "none" on unfamiliar text; no weighting misses harmful requests.
    """
    generator = np.random.default_rng(SEED)
    counts = Counter(labels)
    weights = torch.tensor([(len(labels) / (len(LABELS) * max(counts[name], 1))) ** CLASS_WEIGHT_POWER for name in LABELS])
    targets = torch.tensor([LABELS.index(label) for label in labels])
    top = TunedTop(copy.deepcopy(encoder.top_layers), LABELS, encoder.dim)
    optimiser = torch.optim.AdamW(
        [{"params": top.layers.parameters(), "lr": LAYER_LR}, {"params": top.out.parameters(), "lr": LABEL_LR}],
        weight_decay=0.01,
    )
    steps = EPOCHS * math.ceil(len(states) / BATCH)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=[LAYER_LR, LABEL_LR], total_steps=steps, pct_start=0.1)
    loss_of = nn.CrossEntropyLoss(weight=weights, label_smoothing=0.05)
    lengths = [len(state) for state in states]
    top.train()
    done = 0
    for _ in range(EPOCHS):
        for batch in _batches(lengths, generator):
            inputs, mask = pad([states[i] for i in batch])
            optimiser.zero_grad()
            loss_of(top(inputs, mask), targets[batch]).backward()
            optimiser.step()
            schedule.step()
            done += 1
            progress(done, steps)
    return top.eval()


def embed(top: TunedTop, states: Sequence[torch.Tensor], batch_size: int = 128) -> torch.Tensor:
    """Unit vectors for per-text states."""
    parts = []
    with torch.inference_mode():
        for start in range(0, len(states), batch_size):
            inputs, mask = pad(states[start : start + batch_size])
            parts.append(top.embed(inputs, mask))
    return torch.cat(parts)


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """The temperature that makes development-split probabilities honest (least negative log-likelihood)."""
    candidates = [round(0.5 + 0.05 * step, 2) for step in range(91)]
    losses = [float(nn.functional.cross_entropy(logits / t, targets)) for t in candidates]
    return candidates[int(np.argmin(losses))]


def calibration_error(probabilities: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error of "harmful" probabilities against what is true."""
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        inside = (probabilities >= low) & (probabilities < high if high < 1 else probabilities <= high)
        if inside.any():
            total += inside.mean() * abs(probabilities[inside].mean() - correct[inside].mean())
    return round(float(total), 4)


def _progress(stage: str) -> Callable[[int, int], None]:
    """A one-line progress report per stage, at most every two seconds."""
    last = [0.0]

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - last[0] >= 2:
            last[0] = now
            print(f"\r  {stage}: {done}/{total} ({100 * done // max(total, 1)}%)", end="\n" if done == total else "", flush=True)

    return report


def train(
    data_dir: Path | None, out: Path = MODEL_FILE, model_path: Path | None = None, exemplars_dir: Path = EXEMPLARS_DIR
) -> dict[str, object]:
    """Build the act model from the exemplars and the corpora in `data_dir`; write it to `out`; return its report."""
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True, warn_only=True)
    encoder = shared_encoder(model_path or default_model_path())
    examples = load_exemplars(exemplars_dir) + (load_corpora(data_dir) if data_dir is not None else [])
    print(f"masking {len(examples)} texts")
    examples = [Example(mask_targets(example.text), example.label, example.source) for example in examples]
    print("telling languages apart")
    examples, left_out = balance_languages(examples)
    train_rows, dev_rows = split(examples)
    train_rows += joined_examples(train_rows, np.random.default_rng(SEED))
    print(f"training on {len(train_rows)} texts, calibrating on {len(dev_rows)}; labels {dict(Counter(r.label for r in train_rows))}")
    with encoder.lock:
        encoder.max_tokens = TRAIN_TOKENS
        try:
            train_states = lower_states(encoder, [row.text for row in train_rows], _progress("reading training texts"))
            dev_states = lower_states(encoder, [row.text for row in dev_rows], _progress("reading development texts"))
        finally:
            encoder.max_tokens = MAX_TOKENS
    top = train_top(train_states, [row.label for row in train_rows], encoder, _progress("tuning"))
    dev_vectors = embed(top, dev_states)
    dev_targets = torch.tensor([LABELS.index(row.label) for row in dev_rows])
    with torch.inference_mode():
        dev_logits = top.out(dev_vectors)
    temperature = fit_temperature(dev_logits, dev_targets)
    harmful_train = [i for i, row in enumerate(train_rows) if row.label != "none" and row.source != "joined"]
    picked = np.random.default_rng(SEED).permutation(harmful_train)[:BANK_SIZE]
    bank = embed(top, [train_states[i] for i in sorted(picked)])
    evidence = (dev_vectors @ bank.T).max(dim=1).values.numpy()
    harmful_dev = dev_targets.numpy() != 0
    floor = float(np.quantile(evidence[harmful_dev], 1 - EVIDENCE_RECALL)) if harmful_dev.any() else 0.0
    harm = 1.0 - (dev_logits / temperature).softmax(-1)[:, 0].numpy()
    report = {
        "recipe": f"v{RECIPE_VERSION} layers=2 epochs={EPOCHS} batch={BATCH} lr={LAYER_LR},{LABEL_LR} seed={SEED} tokens={TRAIN_TOKENS}",
        "train_texts": len(train_rows), "dev_texts": len(dev_rows),
        "sources": dict(Counter(row.source.split("/")[0] for row in train_rows)),
        "temperature": temperature, "evidence_floor": round(floor, 4),
        "dev_calibration_error": calibration_error(harm, harmful_dev.astype(float)),
        "dev_harmless_below_floor": round(float((evidence[~harmful_dev] < floor).mean()), 4),
        "encoder": encoder.fingerprint,
        "harmful_left_out_by_language": left_out,
    }  # fmt: skip
    state = {key: value.half() for key, value in top.state_dict().items()}
    payload = {"state": state, "labels": list(LABELS), "temperature": temperature, "bank": bank.half(), "evidence_floor": floor, "meta": report}
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(suffix=".pt", dir=out.parent)
    os.close(handle)
    try:
        torch.save(payload, partial)
        Path(partial).replace(out)
    finally:
        Path(partial).unlink(missing_ok=True)
    return report


def check_loads(path: Path | None = None, model_path: Path | None = None) -> Mapping[str, object]:
    """Load what was written, as the bot will: a model that does not load must not ship."""
    return ActModel.load(path, model_path).meta
