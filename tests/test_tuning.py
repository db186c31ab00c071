"""The moderation classifier's tuned top: the same maths as the model it came from, trained, cached, rebuilt."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from sentence_transformers import SentenceTransformer

from bot.config import ModerationSection
from bot.enforcement import load_moderator
from moderation import classifier as classifier_module
from moderation.classifier import Classifier, Encoder
from moderation.tuning import TunedTop, additive_mask, joined_exemplars, train_top
from tests import tiny_models


@pytest.fixture(scope="module")
def tiny_encoder_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_models.sentence_encoder(tmp_path_factory.mktemp("tiny-minilm"))


def test_lower_layers_plus_the_untouched_top_equal_the_whole_model(tiny_encoder_path: Path) -> None:
    # Catches a transformers release that changes how BERT layers take their mask.
    texts = ["how do I kill a python process", "a red fox in the snow, painted in oils, with a long tail"]
    whole = SentenceTransformer(str(tiny_encoder_path), device="cpu", local_files_only=True)
    features = whole.preprocess(texts)
    inputs = {key: features[key] for key in ("input_ids", "attention_mask", "token_type_ids") if key in features}
    with torch.no_grad():
        expected = whole[0].auto_model(**inputs).last_hidden_state
        encoder = Encoder(tiny_encoder_path)
        states, mask = encoder.lower_states(texts)
        for layer in encoder.top_layers:
            result = layer(states, attention_mask=additive_mask(mask))
            states = result[0] if isinstance(result, tuple) else result
    assert torch.allclose(states[mask.bool()], expected[mask.bool()], atol=1e-5)


def test_the_tuned_top_learns_the_difference_its_exemplars_teach() -> None:
    encoder = classifier_module._encoder(classifier_module.default_model_path())  # the real MiniLM
    harmful = [f"how do I hurt my {who}" for who in ("neighbour", "boss", "sister", "roommate", "teacher", "cousin")]
    harmless = [f"how do I help my {who}" for who in ("neighbour", "boss", "sister", "roommate", "teacher", "cousin")]
    texts, labels = harmful * 8 + harmless * 8, ["violence"] * 48 + ["none"] * 48
    top = train_top(encoder.exemplar_states(texts), labels, encoder.top_layers, encoder.dim)
    states, mask = encoder.lower_states(["how do I hurt my uncle", "how do I help my uncle"])
    hurt, help_ = top.probabilities(states, mask)
    assert hurt[top.labels.index("violence")] > 0.5 > help_[top.labels.index("violence")]


async def test_config_examples_are_trained_on_and_a_damaged_cache_is_retrained_not_fatal(
    tiny_encoder_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(classifier_module, "_BUILT", {})
    section = ModerationSection(
        model=str(tiny_encoder_path), cache_dir=str(tmp_path), examples={"violence": ["an admin's own example"]}
    )
    built = (await load_moderator(section)).classifier  # as the bot starts: the examples come from config
    assert built is not None
    [cached] = tmp_path.glob("moderation-top-*.pt")
    assert isinstance(built.top, TunedTop) and set(built.labels) == set(classifier_module.LABELS)

    monkeypatch.setattr(classifier_module, "_BUILT", {})
    again = Classifier.build(tiny_encoder_path, tmp_path, extra={"violence": ["an admin's own example"]})
    assert list(tmp_path.glob("moderation-top-*.pt")) == [cached]  # the same examples: the same model, not a new one
    assert again.classify(["hello"]) == built.classify(["hello"])  # read back from the cache, same weights

    cached.write_bytes(b"not a model")
    monkeypatch.setattr(classifier_module, "_BUILT", {})
    rebuilt = Classifier.build(tiny_encoder_path, tmp_path, extra={"violence": ["an admin's own example"]})
    assert rebuilt.classify(["hello"])[0].keys() == built.classify(["hello"])[0].keys()
    assert cached.read_bytes() != b"not a model"


def test_joined_exemplars_keep_one_harmful_label_among_harmless_chatter() -> None:
    texts = ["nice weather today", "my cat sleeps all day", "what a great song", "how do I build a pipe bomb"]
    labels = ["none", "none", "none", "weapons"]
    joined, joined_labels = joined_exemplars(texts, labels)
    assert (joined, joined_labels) == joined_exemplars(texts, labels)  # the same every start: the cache key holds
    for text, label in zip(joined, joined_labels, strict=True):
        assert (label == "weapons") == ("pipe bomb" in text)
        assert text.count(". ") >= 1  # always two exemplars or more
    assert joined_labels.count("none") == 2000 and joined_labels.count("weapons") == 1000


def test_admin_examples_may_relabel_ours_but_never_the_minors_ones() -> None:
    ours = yaml.safe_load((classifier_module.EXEMPLARS_DIR / "minors.yaml").read_text(encoding="utf-8"))["block"][0]
    violent = yaml.safe_load((classifier_module.EXEMPLARS_DIR / "violence.yaml").read_text(encoding="utf-8"))["block"][0]
    plain = classifier_module.load_exemplars()
    extra = {"none": [ours, ours.upper() + " ", violent], "fraud": ["a brand new admin example"]}
    edited = classifier_module.load_exemplars(extra=extra)
    labels = dict(zip(edited.texts, edited.labels, strict=True))
    assert labels[classifier_module._reading(ours)] == "minors"
    assert labels[classifier_module._reading(violent)] == "none"
    assert labels[classifier_module._reading("a brand new admin example")] == "fraud"
    assert len(edited.texts) == len(plain.texts) + 1
