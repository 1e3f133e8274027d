"""Weight averaging: the EMA and uniform means against their closed forms, the average swapped in and
out exactly, and in the trainer: dev scores and best/ come from the average, resume continues it."""

from __future__ import annotations

import json

import pytest
import torch

from mtbert.bert import CheckpointError
from torch import nn

from mtbert.cli import main
from mtbert.config import load_config
from mtbert.multitask import MultitaskModel
from mtbert.train import Trainer
from mtbert.train.averaging import build_weight_average

from conftest import stop_at
from test_train_cli import tiny_overrides


def walk(average, model: nn.Module, steps: int, seed: int = 0) -> list[torch.Tensor]:
    """Move the model's weight to fresh random values ``steps`` times, updating the average after each;
    returns the weight's values, the starting one first."""
    generator = torch.Generator().manual_seed(seed)
    seen = [model.weight.detach().clone()]
    for _ in range(steps):
        with torch.no_grad():
            model.weight.copy_(torch.randn(model.weight.shape, generator=generator))
        average.update()
        seen.append(model.weight.detach().clone())
    return seen


def test_uniform_average_is_the_mean_of_the_weights_from_its_start():
    model = nn.Linear(3, 2, bias=False)
    average = build_weight_average("uniform", {"start": 0.5}, model, total_updates=8)
    seen = walk(average, model, 8)
    torch.testing.assert_close(average.shadow[0], torch.stack(seen[4:]).mean(0))
    assert average.state_dict()["updates"] == 8


def test_before_its_start_the_uniform_average_is_the_current_weights_and_the_shadow_is_left_alone():
    model = nn.Linear(3, 2, bias=False)
    average = build_weight_average("uniform", {"start": 0.5}, model, total_updates=8)
    untouched = average.shadow[0].clone()
    seen = walk(average, model, 3)
    assert torch.equal(average.shadow[0], untouched)  # no copy per update before the start
    with average.applied():
        assert torch.equal(model.weight, seen[-1])
    assert torch.equal(model.weight, seen[-1])


def test_ema_weights_each_iterate_by_its_decays():
    """shadow_n = Π β_k·θ_0 + Σ_k (1 − β_k)·Π_{j>k} β_j·θ_k, with β_k = min(decay, (1 + k)/(10 + k))."""
    model = nn.Linear(3, 2, bias=False)
    decay = 0.8
    average = build_weight_average("ema", {"decay": decay}, model, total_updates=40)
    seen = walk(average, model, 40)
    betas = [min(decay, (1 + k) / (10 + k)) for k in range(1, 41)]
    assert betas[0] == pytest.approx(2 / 11) and betas[-1] == decay  # warm-up, then the decay

    def tail(k: int) -> float:  # Π_{j>k} β_j
        return float(torch.tensor(betas[k:]).prod()) if k < len(betas) else 1.0

    expected = tail(0) * seen[0] + sum((1 - betas[k - 1]) * tail(k) * seen[k] for k in range(1, 41))
    torch.testing.assert_close(average.shadow[0], expected)
    assert not torch.allclose(average.shadow[0], seen[-1])


def test_the_average_is_applied_for_the_duration_and_the_trained_weights_come_back_exactly():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 1))
    average = build_weight_average("ema", {"decay": 0.5}, model, total_updates=5)
    walk(average, model[0], 5)
    trained = [p.detach().clone() for p in model.parameters()]
    with average.applied():
        assert torch.equal(model[0].weight, average.shadow[0])
    assert all(torch.equal(p, t) for p, t in zip(model.parameters(), trained))
    with pytest.raises(RuntimeError):
        with average.applied():
            raise RuntimeError("evaluation failed")
    assert all(torch.equal(p, t) for p, t in zip(model.parameters(), trained))


def test_frozen_parameters_are_not_copied_and_a_mismatched_state_is_refused():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 1))
    model[0].requires_grad_(False)
    average = build_weight_average("ema", {}, model, total_updates=5)
    assert [s.shape for s in average.shadow] == [torch.Size([1, 4]), torch.Size([1])]
    other = build_weight_average("ema", {}, nn.Linear(4, 4), total_updates=5)
    with pytest.raises(ValueError, match="does not match this model's trainable parameters"):
        average.load_state_dict(other.state_dict())


@pytest.mark.parametrize("name, options, message", [
    ("swa", {}, "unknown weight average .* choose one of ema, uniform"),
    ("ema", {"beta": 0.9}, "has no option.* beta; its options: decay"),
    ("ema", {"decay": 1.0}, "strictly between 0 and 1"),
    ("uniform", {"start": 1.0}, r"in \[0, 1\)"),
])
def test_bad_averaging_settings_are_named(name, options, message):
    with pytest.raises(ValueError, match=message):
        build_weight_average(name, options, nn.Linear(2, 2), total_updates=4)


AVERAGED = {"train.averaging": "ema", "train.averaging_options": "{decay: 0.9}", "train.checkpoint_every": 0,
            "data.limit": 20, "train.epochs": 1}  # one evaluation, at the end: best/ is the final average


def test_dev_scores_and_best_come_from_the_average_and_resume_continues_it(tmp_path, tiny_checkpoint, data_dir,
                                                                          capsys):
    config = load_config("recipes/multitask-base.yaml", tiny_overrides(tiny_checkpoint, data_dir, **AVERAGED))
    trainer = Trainer(config, tmp_path / "whole")
    whole = trainer.train()
    assert trainer.average.updates == whole["steps"] > 0

    # best/ is the final average, not the trained weights
    state = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)
    names = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    with trainer.average.applied():
        averaged = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    assert any(not torch.equal(averaged[n], state["model"][n]) for n in names)  # not the last iterate
    saved = dict(MultitaskModel.from_pretrained(tmp_path / "whole" / "best").named_parameters())
    assert all(torch.equal(saved[n], averaged[n]) for n in names)

    # the recorded best dev scores are the saved (averaged) model's: evaluate best/ through the CLI
    capsys.readouterr()
    assert main(["evaluate", "--model", str(tmp_path / "whole" / "best"), "--data-dir", str(data_dir),
                 "--limit", "20", "--device", "cpu", "--precision", config.train.precision]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    for metric in ("sst_acc", "quora_acc", "sts_pearson", "composite"):
        assert evaluated[metric] == pytest.approx(whole["best"][metric], abs=1e-6), metric

    # a stopped run resumes to the same average and the same scores
    Trainer(config, tmp_path / "cut", callbacks=[stop_at(3)]).train()
    resumed = Trainer(config, tmp_path / "cut").train(resume=True)
    assert resumed["best"] == whole["best"]
    ours = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["averaging"]
    theirs = state["averaging"]
    assert ours["updates"] == theirs["updates"] == whole["steps"]
    assert all(torch.equal(a, b) for a, b in zip(ours["shadow"], theirs["shadow"]))


def test_resuming_a_run_without_an_average_with_one_is_refused(tmp_path, tiny_checkpoint, data_dir):
    plain = load_config("recipes/multitask-base.yaml", tiny_overrides(tiny_checkpoint, data_dir, **{
        "train.checkpoint_every": 0, "data.limit": 20}))
    Trainer(plain, tmp_path / "run", callbacks=[stop_at(2)]).train()
    averaged = load_config("recipes/multitask-base.yaml", tiny_overrides(tiny_checkpoint, data_dir, **AVERAGED))
    with pytest.raises(CheckpointError, match="written by a run with other settings: train.averaging: '' in the checkpoint, "
                                         "'ema' now"):
        Trainer(averaged, tmp_path / "run").train(resume=True)
