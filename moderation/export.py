"""`python -m moderation export`: the shipped act model as ONNX, for `ServedActs` (needs torch, transformers, onnx)."""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from moderation.acts import ActModel
from moderation.serving import MAX_TOKENS, META_FILE, NETWORK_FILE, TOKENIZER_FILE, ActModelError, ServedActs, export_folder

# Texts the export is checked on: the served vectors must match torch's on short, long and padded input.
CHECK_TEXTS = ("hi", "a watercolour fox reading a map, soft light, by an unknown painter " * 12, "¿Qué tal? 🎉 <person> ok")
# Export is exact arithmetic in another runtime: anything past float noise means a broken graph.
MAX_DIFFERENCE = 1e-4
OPSET = 17


class _Network(nn.Module):
    """Token ids → unit vectors: the frozen encoder and the tuned layers in one graph."""

    def __init__(self, model: ActModel) -> None:
        super().__init__()
        self.bert = model.encoder._bert
        self.top = model.top

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        """Unit (batch, dim) vectors."""
        states = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
        return self.top.embed(states, attention_mask)  # type: ignore[no-any-return]


def export(model_file: Path, model_path: Path, folder: Path | None = None, replace: bool = False) -> Path:
    """Write the network, head and tokenizer of `model_file` into its cache folder (atomically); return the folder.

    An existing folder is kept (another process finished first) unless `replace`.
    """
    model = ActModel.load(model_file, model_path)
    folder = folder or export_folder(model_file, model_path)
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=".export-", dir=folder.parent))
    try:
        sample = model.encoder.tokenizer(list(CHECK_TEXTS[:2]), padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
        inputs = ("input_ids", "attention_mask", "token_type_ids")
        axes = {name: {0: "batch", 1: "tokens"} for name in inputs}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on Python-side branches do not apply to a fixed BERT
            torch.onnx.export(_Network(model).eval(), tuple(sample[name] for name in inputs), str(partial / NETWORK_FILE),
                              input_names=list(inputs), output_names=["vectors"], dynamic_axes={**axes, "vectors": {0: "batch"}},
                              opset_version=OPSET, dynamo=False)  # fmt: skip
        model.encoder.tokenizer.backend_tokenizer.save(str(partial / TOKENIZER_FILE))  # the exact fast tokenizer in use
        model.head().save(partial)
        difference = float(np.abs(ServedActs(partial, threads=1).vectors(CHECK_TEXTS) - model.vectors(list(CHECK_TEXTS)).numpy()).max())
        if difference > MAX_DIFFERENCE:
            raise ActModelError(f"the exported moderation model differs from the trained one by {difference:.2g}")
        partial.chmod(0o755)  # mkdtemp's 0700 would shut out a bot running as another user
        try:
            partial.rename(folder)
        except OSError:
            if folder.exists() and replace:  # asked for anew (e.g. the old copy is damaged): swap it out
                aside = folder.with_name(f".replaced-{folder.name}-{os.getpid()}")
                folder.rename(aside)
                partial.rename(folder)
                shutil.rmtree(aside, ignore_errors=True)
            elif not (folder / META_FILE).exists():  # not another process finishing the same export first
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return folder
