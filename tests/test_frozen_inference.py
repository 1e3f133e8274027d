"""Compiled, frozen inference (``mtbert.inference.frozen``): the graph answers what the eager encoder
answers, on batches of different shapes and padding; training and gradient calls never reach it; a
compile failure falls back to eager with one warning; an input error is still the input's error; the
Predictor and ``--compile`` in the CLI give the eager predictions."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from mtbert import BertConfig, BertModel, Predictor
from mtbert.cli import main
from mtbert.inference.frozen import FrozenForward, freeze_for_inference, is_frozen
from test_train_cli import trained_run  # noqa: F401  (the module's trained tiny run)

TINY = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=64)


def tiny_encoder() -> BertModel:
    torch.manual_seed(0)
    return BertModel(BertConfig(**TINY)).eval()


def batch(size: int, length: int, padded_from: int | None = None):
    ids = torch.randint(5, 100, (size, length), generator=torch.Generator().manual_seed(size * length))
    mask = torch.ones(size, length, dtype=torch.long)
    if padded_from is not None:
        mask[: size // 2, padded_from:] = 0
    return ids, mask


class Recording:
    """A stand-in for the compiled graph: counts calls, answers with the eager forward or fails."""

    def __init__(self, eager, fail: bool = False):
        self.eager, self.fail, self.calls = eager, fail, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.fail:
            raise RuntimeError("C++ compile failed: no compiler\nlong log")
        return self.eager(*args, **kwargs)


def test_only_no_gradient_eval_calls_reach_the_graph():
    encoder = freeze_for_inference(tiny_encoder())
    assert is_frozen(encoder) and not encoder.training
    forward: FrozenForward = encoder.forward
    forward.compiled = Recording(forward.eager)
    ids, mask = batch(2, 8)
    with torch.no_grad():
        encoder(ids, mask)
    assert forward.compiled.calls == 1
    encoder(ids, mask).last_hidden_state.sum().backward()  # gradients on: eager, and they flow
    assert forward.compiled.calls == 1 and encoder.embeddings.word_embeddings.weight.grad is not None
    encoder.train()
    with torch.no_grad():
        encoder(ids, mask)
    assert forward.compiled.calls == 1
    assert set(encoder.state_dict()) == set(tiny_encoder().state_dict())  # saving is untouched
    assert freeze_for_inference(encoder).forward is forward  # a second freeze keeps the first


def test_a_compile_failure_warns_once_and_runs_eagerly(caplog):
    encoder = freeze_for_inference(tiny_encoder())
    forward: FrozenForward = encoder.forward
    forward.compiled = Recording(forward.eager, fail=True)
    ids, mask = batch(2, 8)
    with torch.no_grad(), caplog.at_level(logging.WARNING, logger="mtbert"):
        first = encoder(ids, mask).last_hidden_state
        second = encoder(ids, mask).last_hidden_state
    torch.testing.assert_close(first, second)
    assert forward.compiled.calls == 1 and forward.broken.startswith("RuntimeError: C++ compile failed")
    assert [r.message for r in caplog.records].count(
        "compiled inference is off for this model (RuntimeError: C++ compile failed: no compiler); running eagerly") == 1


def test_an_input_error_is_the_inputs_and_leaves_the_graph_on():
    encoder = freeze_for_inference(tiny_encoder())
    forward: FrozenForward = encoder.forward
    forward.compiled = Recording(forward.eager)
    ids, mask = batch(1, 80)  # longer than the 64 positions
    with torch.no_grad(), pytest.raises(ValueError, match="longer than the model's 64 positions"):
        encoder(ids, mask)
    assert forward.broken is None


def test_the_frozen_graph_answers_what_the_eager_encoder_answers():
    eager, frozen = tiny_encoder(), freeze_for_inference(tiny_encoder())
    with torch.no_grad():
        for size, length, padded_from in ((4, 16, 10), (3, 24, None), (5, 12, 3)):
            ids, mask = batch(size, length, padded_from)
            expected, got = eager(ids, mask), frozen(ids, mask)
            torch.testing.assert_close(got.last_hidden_state, expected.last_hidden_state, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(got.pooler_output, expected.pooler_output, rtol=1e-4, atol=1e-5)
    assert frozen.forward.broken is None and frozen.forward.calls == 3


def test_predictor_and_cli_compiled_answer_as_eager(trained_run, data_dir, capsys):  # noqa: F811
    inputs = ["A gorgeous film.", "Dull and far too long, with nothing to say.", "Fine."]
    eager = Predictor.from_pretrained(trained_run / "best", device="cpu", precision="fp32")
    frozen = Predictor.from_pretrained(trained_run / "best", device="cpu", precision="fp32", compiled=True)
    assert is_frozen(frozen.model.encoder) and not is_frozen(eager.model.encoder)
    for mine, theirs in zip(frozen.predict("sst", inputs), eager.predict("sst", inputs)):
        assert mine.label_id == theirs.label_id
        assert list(mine.probabilities.values()) == pytest.approx(list(theirs.probabilities.values()), abs=1e-4)
    assert frozen.model.encoder.forward.calls > 0
    scores = {}
    for flags in ([], ["--compile"]):
        assert main(["evaluate", "--model", str(trained_run / "best"), "--data-dir", str(data_dir), "--limit", "16",
                     "--device", "cpu", "--precision", "fp32", *flags]) == 0
        scores[bool(flags)] = json.loads(capsys.readouterr().out)
    assert scores[True].keys() == scores[False].keys()
    for key, value in scores[False].items():
        if isinstance(value, float):
            assert scores[True][key] == pytest.approx(value, abs=1e-4), key
