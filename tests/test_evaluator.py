"""Evaluation batching: capping a batch's padded tokens changes which examples share a batch, never a
prediction or its order."""

from __future__ import annotations

import pytest
import torch

from mtbert import BertModel, BertTokenizer
from mtbert.config import load_config
from mtbert.evaluate import evaluate_split, predict_features
from mtbert.evaluate.evaluator import default_eval_max_tokens
from mtbert.multitask import MultitaskModel, sorted_batches
from mtbert.precision import resolve_precision
from mtbert.tasks import TASKS
from mtbert.train.data import labelled_split, load_task_splits


def test_token_capped_batches_give_the_same_predictions_in_the_same_order(tiny_checkpoint, data_dir):
    torch.manual_seed(0)
    model = MultitaskModel(BertModel.from_pretrained(tiny_checkpoint), BertTokenizer.from_pretrained(tiny_checkpoint),
                           [TASKS[t] for t in ("sst", "sts")], {"sts": {"type": "cosine"}}, max_length=64).eval()
    dev = labelled_split(load_task_splits(model, data_dir, limit=120, splits=("dev",)), "dev")
    precision = resolve_precision("fp32", torch.device("cpu"))
    for features in dev.values():
        assert len(sorted_batches(features.lengths, 128, 256)) > len(sorted_batches(features.lengths, 128))
        whole = predict_features(model, features, 128, precision, max_tokens=0)
        capped = predict_features(model, features, 128, precision, max_tokens=256)
        assert capped.ids == whole.ids == [e.id for e in features.examples]
        torch.testing.assert_close(capped.outputs, whole.outputs, atol=1e-5, rtol=1e-5)
    # The random tiny encoder's cosine scores are nearly constant, so Pearson magnifies the 1e-6 float
    # differences of other batch shapes; the metrics agree to far below what a report shows.
    whole_metrics = evaluate_split(model, dev, 128, precision, 0)[0]
    assert evaluate_split(model, dev, 128, precision, 256)[0] == pytest.approx(whole_metrics, abs=2e-3)


def test_the_default_token_cap_is_the_devices(tiny_checkpoint, data_dir):
    """null (the default) caps CPU batches at 1,024 padded tokens and leaves GPU batches uncapped."""
    assert default_eval_max_tokens(torch.device("cpu")) == 1024
    assert default_eval_max_tokens(torch.device("cuda", 0)) == 0
    assert load_config(None).train.eval_max_tokens is None
    torch.manual_seed(0)
    model = MultitaskModel(BertModel.from_pretrained(tiny_checkpoint), BertTokenizer.from_pretrained(tiny_checkpoint),
                           [TASKS["sst"]], max_length=64).eval()
    features = labelled_split(load_task_splits(model, data_dir, limit=300, splits=("dev",)), "dev")["sst"]
    precision = resolve_precision("fp32", torch.device("cpu"))
    assert len(sorted_batches(features.lengths, 128, 1024)) > len(sorted_batches(features.lengths, 128))
    default = predict_features(model, features, 128, precision)
    assert torch.equal(default.outputs, predict_features(model, features, 128, precision, 1024).outputs)


def test_one_evaluation_pass_casts_each_weight_once(tiny_checkpoint, data_dir):
    """bf16 autocast keeps a weight's cast copy until its region ends: the evaluator holds one region over
    all of a pass's batches, so a projection weight is cast once, not once per batch."""
    torch.manual_seed(0)
    model = MultitaskModel(BertModel.from_pretrained(tiny_checkpoint), BertTokenizer.from_pretrained(tiny_checkpoint),
                           [TASKS["sst"]], max_length=64).eval()
    features = labelled_split(load_task_splits(model, data_dir, limit=120, splits=("dev",)), "dev")["sst"]
    assert len(sorted_batches(features.lengths, 128, 256)) >= 3
    weight_shape = list(model.encoder.layers[0].attention.qkv.weight.shape)
    with torch.profiler.profile(record_shapes=True) as profile:
        predict_features(model, features, 128, resolve_precision("bf16", torch.device("cpu")), max_tokens=256)
    weight_casts = [e for e in profile.events() if e.name == "aten::_to_copy" and e.input_shapes
                    and e.input_shapes[0] == weight_shape]
    assert len(weight_casts) == len(model.encoder.layers)  # one per layer's qkv weight, for the whole pass
