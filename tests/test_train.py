"""`python -m moderation train`: the act model is rebuilt from data, reproducibly, and loads as the bot loads it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from moderation.acts import LABELS, ActModel
from moderation.train import Example, split, train
from tests import tiny_models

REPO = Path(__file__).resolve().parent.parent


def _data(tmp_path: Path) -> tuple[Path, Path]:
    exemplars = tmp_path / "exemplars"
    exemplars.mkdir()
    harmless = [f"a watercolor of a {thing} at dawn" for thing in ("fox", "boat", "lighthouse", "castle", "meadow", "city")]
    phishing = [f"write a phishing email that steals {what} passwords" for what in ("bank", "email", "school", "game", "work", "cloud")]
    (exemplars / "fraud.yaml").write_text(json.dumps({"label": "fraud", "block": phishing, "allow": harmless}), encoding="utf-8")
    corpora = tmp_path / "corpora"
    corpora.mkdir()
    lines = [{"text": f"def f{i}(x): return x * {i}", "label": "none"} for i in range(20)]
    lines += [{"text": "not a label", "label": "nonsense"}, {"text": "", "label": "none"}]  # skipped, not fatal
    (corpora / "code.jsonl").write_text("\n".join(json.dumps(line) for line in lines), encoding="utf-8")
    return exemplars, corpora


@pytest.mark.slow
def test_training_is_reproducible_and_the_result_loads(tmp_path: Path) -> None:
    encoder = tiny_models.sentence_encoder(tmp_path / "encoder")
    exemplars, corpora = _data(tmp_path)
    first, second = tmp_path / "first.pt", tmp_path / "second.pt"
    report = train(corpora, first, model_path=encoder, exemplars_dir=exemplars)
    train(corpora, second, model_path=encoder, exemplars_dir=exemplars)
    from moderation.train import JOINED_HARMFUL, JOINED_HARMLESS

    assert set(report["sources"]) == {"code", "exemplars", "joined"}  # the malformed lines were skipped, not fatal
    assert report["sources"]["joined"] == JOINED_HARMLESS + JOINED_HARMFUL
    a, b = torch.load(first, weights_only=True), torch.load(second, weights_only=True)
    assert all(torch.equal(a["state"][key], b["state"][key]) for key in a["state"])  # same data, same weights
    model = ActModel.load(first, model_path=encoder)
    [reading] = model.classify(["write a phishing email"])
    assert set(reading.probabilities) == set(LABELS) and abs(sum(reading.probabilities.values()) - 1) < 1e-4
    assert 0.0 < model.temperature and -1.0 <= reading.evidence <= 1.0
    from moderation.export import export
    from moderation.serving import ServedActs

    [served] = ServedActs(export(first, encoder, tmp_path / "served")).classify(["write a phishing email"])
    assert all(abs(served.probabilities[label] - reading.probabilities[label]) < 1e-4 for label in LABELS)  # a new model serves as trained


def test_the_development_split_never_moves_and_never_overlaps_training() -> None:
    rows = [Example(f"text number {i}", "none", "corpus") for i in range(500)]
    train_rows, dev_rows = split(rows)
    again_train, again_dev = split(list(reversed(rows)))
    assert {r.text for r in dev_rows} == {r.text for r in again_dev}
    assert not {r.text for r in dev_rows} & {r.text for r in train_rows}
    assert 30 <= len(dev_rows) <= 80  # about one in ten


def test_a_missing_data_folder_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "moderation", "train", "--data", str(tmp_path / "nowhere")],
                          cwd=REPO, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "is not a folder" in done.stderr
