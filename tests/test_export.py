"""Exports of a trained model: sentence-transformers loads the same vectors mtbert gives, and transformers
loads one task as a BertForSequenceClassification (the ONNX export is tested with the backends that run
it, in test_backends.py)."""

from __future__ import annotations

import json

import pytest
import torch

from mtbert import Predictor
from mtbert.cli import main
from mtbert.multitask import MultitaskModel
from test_train_cli import trained_run  # noqa: F401

SENTENCES = ["A dog runs in the park.", "Completely different sentence here!", "short", "The film was a delight."]


@pytest.mark.parametrize("pooling, normalize", [("mean", False), ("cls", True)])
def test_sentence_transformers_gives_mtbert_vectors(trained_run, tmp_path, pooling, normalize):  # noqa: F811
    st = pytest.importorskip("sentence_transformers")
    out = tmp_path / "st"
    args = ["export", "--model", str(trained_run / "best"), "--format", "sentence-transformers", str(out),
            "--pooling", pooling] + (["--normalize"] if normalize else [])
    assert main(args) == 0
    model = st.SentenceTransformer(str(out), device="cpu")
    ours = Predictor.from_pretrained(trained_run / "best", device="cpu", precision="fp32")
    assert model.max_seq_length == ours.model.max_length
    theirs = model.encode(SENTENCES, convert_to_tensor=True)
    mine = ours.encode(SENTENCES, pooling=pooling, normalize=normalize)
    assert torch.allclose(theirs, mine, atol=1e-5), (theirs - mine).abs().max()


def test_exports_refuse_what_they_cannot_represent(trained_run, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "busy"
    out.mkdir()
    (out / "x").write_text("x")
    assert main(["export", "--model", str(trained_run / "best"), "--format", "sentence-transformers", str(out)]) == 2
    assert "is not empty" in capsys.readouterr().err


@pytest.fixture(scope="module")
def pooler_run(tmp_path_factory, tiny_checkpoint, data_dir):
    """A run whose SST and Quora heads are what BertForSequenceClassification is: linear on the pooler."""
    from test_train_cli import tiny_overrides

    run = tmp_path_factory.mktemp("pooler-run")
    args = ["train", "--config", "recipes/quickstart.yaml", "--output-dir", str(run)]
    for item in tiny_overrides(tiny_checkpoint, data_dir, **{
            "train.epochs": 1, "model.heads": "{sst: {type: linear, pooling: pooler}, quora: {type: cross_encoder, "
            "pooling: pooler}, sts: {type: cosine, pooling: mean}}"}):
        args += ["--set", item]
    assert main(args) == 0
    return run


@pytest.mark.parametrize("task", ["sst", "quora"])
def test_a_linear_pooler_head_exports_for_the_transformers_pipeline(pooler_run, tmp_path, task):
    transformers = pytest.importorskip("transformers")
    from mtbert import Predictor

    out = tmp_path / task
    assert main(["export", "--model", str(pooler_run / "best"), "--format", "transformers", "--task", task,
                 str(out)]) == 0
    classify = transformers.pipeline("text-classification", model=str(out), tokenizer=str(out), device="cpu", top_k=None)
    predictor = Predictor.from_pretrained(pooler_run / "best", device="cpu", precision="fp32")
    inputs = ["A gorgeous, witty film.", "A dull mess."] if task == "sst" else [("How do I cook?", "How to cook?")]
    ours = predictor.predict(task, inputs)
    for given, answer in zip(inputs, ours):
        theirs = classify({"text": given[0], "text_pair": given[1]} if task == "quora" else given)
        theirs = theirs[0] if isinstance(theirs[0], list) else theirs
        probabilities = {item["label"]: item["score"] for item in theirs}
        assert probabilities.keys() == answer.probabilities.keys()
        for name, p in answer.probabilities.items():
            assert probabilities[name] == pytest.approx(p, abs=1e-4), (name, probabilities, answer.probabilities)


def test_a_head_the_transformers_class_cannot_hold_is_refused_with_the_reason(pooler_run, trained_run, tmp_path,  # noqa: F811
                                                                              capsys):
    code = main(["export", "--model", str(pooler_run / "best"), "--format", "transformers", "--task", "sts",
                 str(tmp_path / "sts")])
    assert code == 2 and "its head is 'cosine', not a linear layer over one vector" in capsys.readouterr().err
    code = main(["export", "--model", str(trained_run / "best"), "--format", "transformers", str(tmp_path / "x")])
    assert code == 2 and "give --task" in capsys.readouterr().err
