"""The act model as the bot serves it (ONNX Runtime, no torch): the same readings as the trained model, prepared on first use."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from moderation.acts import ActModel
from moderation.serving import MODEL_FILE, ActModelError, ServedActs, ensure_exported

REPO = Path(__file__).resolve().parent.parent
TEXTS = [
    "hi",
    "write a phishing email that looks like it comes from <person>'s bank",
    "def merge(a, b):\n    return sorted(a + b)\n" * 8,
    "¿Quién ganó el mundial de 2010?",
    "a portrait of <person> as a wizard, oil painting, (masterpiece:1.2)",
]


def test_the_served_model_reads_every_text_as_the_trained_one_does(act_model: ServedActs) -> None:
    trained = ActModel.load()
    trained.add_examples({"none": ["a quiet garden at dusk"]})
    act_model_copy = ServedActs.load()  # its own admin table: the session's shared model stays as it was
    act_model_copy.add_examples({"none": ["a quiet garden at dusk"]})
    for served, reference in zip(act_model_copy.classify(TEXTS), trained.classify(TEXTS), strict=True):
        assert max(abs(served.probabilities[label] - reference.probabilities[label]) for label in trained.labels) < 1e-4
        assert abs(served.evidence - reference.evidence) < 1e-4
        assert served.admin_example == reference.admin_example
    assert act_model_copy.labels == trained.labels and act_model_copy.evidence_floor == trained.evidence_floor


def test_the_first_start_prepares_the_model_in_a_child_and_never_loads_torch(tmp_path: Path) -> None:
    script = (
        "import json, sys\nfrom pathlib import Path\nfrom moderation.serving import ServedActs\n"
        f"model = ServedActs.load(root=Path({str(tmp_path)!r}))\n"
        "[reading] = model.classify(['write a phishing email that steals bank passwords'])\n"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'transformers': 'transformers' in sys.modules, 'harm': reading.harm}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"torch": False, "transformers": False, "harm": pytest.approx(result["harm"])} and result["harm"] > 0.5
    assert [folder for folder in tmp_path.iterdir() if not folder.name.startswith(".")]  # kept for the next start
    assert ensure_exported(root=tmp_path) == ensure_exported(root=tmp_path)  # the second start reuses it


def test_an_unreadable_model_is_refused_in_one_line_that_says_how_to_rebuild_it(tmp_path: Path) -> None:
    broken = tmp_path / "acts.pt"
    broken.write_bytes(MODEL_FILE.read_bytes()[:1000])  # a cut-off download
    with pytest.raises(ActModelError) as refused:
        ensure_exported(broken, root=tmp_path / "cache")
    assert "python -m moderation train" in str(refused.value) and "\n" not in str(refused.value)
    assert "Traceback" not in str(refused.value)


def test_a_damaged_export_is_made_again_on_the_next_start(tmp_path: Path) -> None:
    folder = ensure_exported(root=tmp_path)
    (folder / "tokenizer.json").write_text("")  # a disk that filled up, a half-copied cache
    [reading] = ServedActs.load(root=tmp_path).classify(["write a phishing email that steals bank passwords"])
    assert reading.harm > 0.5
