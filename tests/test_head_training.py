"""Every head, loss option and the freezing modes, trained end to end through the CLI on a tiny encoder."""

from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors.torch import load_file

from mtbert.bert import BertModel
from mtbert.cli import main
from mtbert.multitask import MultitaskModel

from test_train_cli import tiny_overrides

RICH_HEADS = ("model.heads={"
              "sst: {type: transformer_layer, dropout: 0.3, loss: cross_entropy, "
              "      loss_options: {cross_entropy: {class_weights: balanced, label_smoothing: 0.1}}},"
              "quora: {type: relational, pooling: mean, loss: bce+cosine_embedding,"
              "        loss_options: {cosine_embedding: {margin: 0.3}}},"
              "sts: {type: relational, pooling: mean}}")


def train(tmp_path, tiny_checkpoint, data_dir, *settings, name="run"):
    args = ["train", "--config", "recipes/multitask-base.yaml", "--output-dir", str(tmp_path / name)]
    for item in tiny_overrides(tiny_checkpoint, data_dir, **{"train.epochs": 1}) + list(settings):
        args += ["--set", item]
    assert main(args) == 0
    return tmp_path / name


def test_rich_heads_losses_and_penalty_train_save_and_evaluate(tmp_path, tiny_checkpoint, data_dir, capsys):
    run = train(tmp_path, tiny_checkpoint, data_dir, RICH_HEADS, "model.shared_hidden_layer=true",
                "train.penalties={l2: 1.0e-4}")
    described = json.loads((run / "best" / "mtbert.json").read_text())
    assert described["shared_hidden_layer"] is True
    assert described["heads"]["quora"]["type"] == "relational" and described["heads"]["sst"]["dropout"] == 0.3
    stored = load_file(str(run / "best" / "heads.safetensors"))
    assert "shared.relational_pairs.0.weight" in stored and "shared.sentence.0.weight" in stored
    assert "heads.sst.layer.attention.qkv.weight" in stored
    capsys.readouterr()
    assert main(["evaluate", "--model", str(run / "best"), "--data-dir", str(data_dir), "--limit", "24",
                 "--device", "cpu"]) == 0  # the run trained on the CPU; test_cuda compares devices
    printed = json.loads(capsys.readouterr().out)
    best = json.loads((run / "results.json").read_text())["best"]
    assert printed["composite"] == pytest.approx(best["composite"], abs=1e-6)


@pytest.mark.parametrize("head", ["siamese_concat", "cosine", "bilinear"])
def test_siamese_heads_train_through_the_cli(tmp_path, tiny_checkpoint, data_dir, head):
    run = train(tmp_path, tiny_checkpoint, data_dir, "data.tasks=[quora, sts]",
                f"model.heads={{quora: {{type: {head}, loss: bce+mnr}}, sts: {{type: {head}}}}}")
    model = MultitaskModel.from_pretrained(run / "best")
    assert model.encoding("quora") == "separate" and model.heads["sts"].registry_name == head
    lines = (run / "predictions" / "sts-dev-output.csv").read_text().splitlines()
    assert len(lines) == 25


def test_frozen_encoder_is_bit_identical_after_training(tmp_path, tiny_checkpoint, data_dir):
    run = train(tmp_path, tiny_checkpoint, data_dir, "model.freeze=encoder", "data.tasks=[sst]", "model.heads={}")
    assert not (run / "best" / "model.safetensors").exists()  # a frozen encoder is not saved again
    assert load_file(str(run / "best" / "encoder_delta.safetensors")) == {}
    before = BertModel.from_pretrained(tiny_checkpoint).state_dict()
    after = MultitaskModel.from_pretrained(run / "best").encoder.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    trained = sum(len(group["params"]) for group in state["optimizer"]["param_groups"])
    assert trained == 2  # the linear head's weight and bias


@pytest.mark.parametrize("setting, message", [
    ("model.freeze=layers", "model.freeze must be one of none, encoder, embeddings"),
    ("model.trainable_top_layers=1", "trainable_top_layers only applies with model.freeze: encoder"),
    ("model.heads={quora: {type: cosine, options: {scale: 3, color: red}}}", r"head 'cosine' has no option\(s\) color"),
    ("model.heads={sst: {type: cosine}}", "needs a sentence-pair task"),
    ("model.heads={sst: {loss: mnr}}", "serves binary, regression tasks"),
    ("train.penalties={symmetric_kl: 1.0}", "is a divergence, not a parameter penalty"),
    ("train.task_penalties={qoura: {l2: 1.0}}", r"train.task_penalties: 'qoura' is not one of the run's tasks"),
    ("train.task_penalties={quora: {mse: 1.0}}", r"train.task_penalties.quora: 'mse' is a .*not a parameter penalty"),
])
def test_wrong_head_and_loss_settings_are_one_clear_line(tmp_path, tiny_checkpoint, data_dir, setting, message,
                                                         capsys):
    args = ["train", "--config", "recipes/multitask-base.yaml", "--output-dir", str(tmp_path / "bad")]
    for item in tiny_overrides(tiny_checkpoint, data_dir) + [setting]:
        args += ["--set", item]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert re.search(message, err), err


def test_a_task_penalty_joins_only_the_updates_that_hold_its_task(tmp_path, tiny_checkpoint, data_dir):
    """Report 002 gives paraphrase its own L2 term: in separate updates (one per task batch) only Quora's
    carry it; a global penalty joins every update; a combined update holding Quora carries it once."""
    from types import SimpleNamespace

    from mtbert.config import load_config
    from mtbert.train.builder import build_model, penalty_terms
    from mtbert.train.step import StepRunner

    config = load_config("recipes/multitask-base.yaml", tiny_overrides(tiny_checkpoint, data_dir) + [
        "train.task_penalties={quora: {l2: 0.5}}", "train.penalties={l2: 0.25}"])
    model = build_model(config)
    terms = penalty_terms(config, model)
    assert [(weight, task) for weight, _, _, task in terms] == [(0.25, None), (0.5, "quora")]
    squares = float(sum(p.float().pow(2).sum() for p in terms[0][2]))
    runner = SimpleNamespace(penalties=terms)
    assert float(StepRunner._penalty(runner, ["sst"])) == pytest.approx(0.25 * squares, rel=1e-5)
    assert float(StepRunner._penalty(runner, ["quora"])) == pytest.approx(0.75 * squares, rel=1e-5)
    assert float(StepRunner._penalty(runner, ["sst", "quora", "sts"])) == pytest.approx(0.75 * squares, rel=1e-5)
    assert StepRunner._penalty(SimpleNamespace(penalties=terms[1:]), ["sts"]) is None
