"""Pair order (``model.heads.TASK.pair_order``): random orders in training, both orders averaged in
prediction, drawn per epoch as a pure function of seed and epoch, and kept with a saved model."""

from __future__ import annotations

import json

import pytest
import torch

from mtbert import BertModel, BertTokenizer
from mtbert.cli import main
from mtbert.config import load_config
from mtbert.evaluate import predict_features
from mtbert.evaluate.evaluator import head_outputs
from mtbert.multitask import MultitaskModel, featurize
from mtbert.precision import resolve_precision
from mtbert.tasks import TASKS, Example
from mtbert.train import Trainer

from conftest import stop_at
from test_train_cli import tiny_overrides

PAIRS = [Example("a", ("How do I learn Python?", "What is the best way to learn Python quickly?"), 1.0, 1),
         Example("b", ("Why is the sky blue?", "How tall is Mount Everest?"), 0.0, 2),
         Example("c", ("What is love?", "What is love, really, in the end?"), 1.0, 3)]
FP32 = resolve_precision("fp32", torch.device("cpu"))


def make_model(checkpoint, heads: dict) -> MultitaskModel:
    torch.manual_seed(0)
    return MultitaskModel(BertModel.from_pretrained(checkpoint), BertTokenizer.from_pretrained(checkpoint),
                          [TASKS[t] for t in ("sst", "quora", "sts")], heads, max_length=32).eval()


@pytest.mark.parametrize("head", ["cross_encoder", "siamese_concat"])
def test_swapped_segments_are_the_pair_in_the_other_order(tiny_checkpoint, head):
    model = make_model(tiny_checkpoint, {"quora": {"type": head, "pair_order": "random"}})
    features = model.featurize("quora", PAIRS)
    reversed_pairs = [Example(e.id, e.texts[::-1], e.label, e.line) for e in PAIRS]
    expected = featurize(model.tokenizer, TASKS["quora"], reversed_pairs, model.encoding("quora"), 32)
    assert features.swapped == expected.segments != features.segments
    mixed = features.oriented([True, False, True])
    assert mixed.segments == [expected.segments[0], features.segments[1], expected.segments[2]]
    assert torch.equal(mixed.labels, features.labels) and mixed.examples == features.examples
    with pytest.raises(ValueError, match="2 order flags for 3 examples"):
        features.oriented([True, False])
    assert model.featurize("sts", PAIRS).swapped is None  # fixed order: one order kept
    with pytest.raises(ValueError, match="one order of each pair"):
        model.featurize("sts", PAIRS).oriented([False] * 3)


def test_both_orders_predict_the_mean_of_the_two_outputs(tiny_checkpoint):
    model = make_model(tiny_checkpoint, {"quora": {"pair_order": "both"}})
    features = model.featurize("quora", PAIRS)
    given = head_outputs(model, features, 8, FP32)
    swapped = head_outputs(model, features.oriented([True] * 3), 8, FP32)
    assert not torch.allclose(given, swapped)  # a cross-encoder reads the two orders differently
    result = predict_features(model, features, 8, FP32)
    torch.testing.assert_close(result.outputs, (given + swapped) / 2)
    assert result.predictions == ((given + swapped) / 2 > 0).float().tolist()


def test_pair_order_is_checked_and_saved_with_the_model(tiny_checkpoint, tmp_path):
    with pytest.raises(ValueError, match="pair_order must be one of fixed, random, both, not 'sometimes'"):
        make_model(tiny_checkpoint, {"quora": {"pair_order": "sometimes"}})
    with pytest.raises(ValueError, match="'sst': pair_order 'random' needs a sentence-pair task"):
        make_model(tiny_checkpoint, {"sst": {"pair_order": "random"}})
    model = make_model(tiny_checkpoint, {"quora": {"pair_order": "both"}})
    model.save_pretrained(tmp_path / "model")
    saved = json.loads((tmp_path / "model" / "mtbert.json").read_text())["heads"]
    assert saved["quora"]["pair_order"] == "both" and saved["sst"]["pair_order"] == "fixed"
    loaded = MultitaskModel.from_pretrained(tmp_path / "model")
    assert loaded.pair_orders == {"sst": "fixed", "quora": "both", "sts": "fixed"}
    del saved["quora"]["pair_order"]  # a model saved before pair orders (and checksums) existed reads as fixed
    (tmp_path / "model" / "checksums.json").unlink()
    (tmp_path / "model" / "mtbert.json").write_text(json.dumps(
        {**json.loads((tmp_path / "model" / "mtbert.json").read_text()), "heads": saved}))
    assert MultitaskModel.from_pretrained(tmp_path / "model").pair_order("quora") == "fixed"


def test_each_epoch_draws_its_own_orders_and_redraws_them_the_same(tiny_checkpoint, data_dir, tmp_path):
    config = load_config("recipes/multitask-base.yaml", tiny_overrides(
        tiny_checkpoint, data_dir, **{"data.limit": 200, "model.heads.quora.pair_order": "random"}))
    trainer = Trainer(config, tmp_path / "run")
    original = trainer.data["quora"].get("train")

    def swapped_rows(epoch: int) -> list[int]:
        trainer.orient_pairs(epoch)
        shown = trainer.train_features("quora")
        return [i for i in range(len(shown)) if shown.segments[i] != original.segments[i]]

    first = swapped_rows(0)
    assert 60 <= len(first) <= 140  # about half of 200
    assert swapped_rows(0) == first and swapped_rows(1) != first
    assert trainer.train_features("sst") is trainer.data["sst"].get("train")  # fixed tasks as read


def test_pair_order_trains_resumes_exactly_and_predicts_through_the_cli(tmp_path, tiny_checkpoint, data_dir):
    overrides = tiny_overrides(tiny_checkpoint, data_dir, **{"model.heads.quora.pair_order": "both"})
    whole = Trainer(load_config("recipes/multitask-base.yaml", overrides), tmp_path / "whole").train()

    Trainer(load_config("recipes/multitask-base.yaml", overrides), tmp_path / "cut",
            callbacks=[stop_at(4)]).train()
    assert main(["train", "--resume", str(tmp_path / "cut")]) == 0
    assert json.loads((tmp_path / "cut" / "results.json").read_text())["best"] == whole["best"]
    ours = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["model"]
    theirs = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert main(["predict", "--model", str(tmp_path / "whole" / "best"), "--task", "quora",
                 "--text", "Is this a question?", "--text-pair", "Is that a question?"]) == 0


def test_unknown_pair_order_is_a_clear_cli_error(tiny_checkpoint, data_dir, tmp_path, capsys):
    args = ["train", "--config", "recipes/multitask-base.yaml", "--output-dir", str(tmp_path / "run")]
    for item in tiny_overrides(tiny_checkpoint, data_dir, **{"model.heads.quora.pair_order": "shuffled"}):
        args += ["--set", item]
    assert main(args) == 2
    assert "pair_order must be one of fixed, random, both, not 'shuffled'" in capsys.readouterr().err
