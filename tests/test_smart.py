"""SMART: the adversarial term's limits and gradient, the ε-ball, the EMA teacher, NaN safety, and a
run that resumes exactly with its teacher."""

from __future__ import annotations

import pytest
import torch

from mtbert.config import SmartConfig, load_config
from mtbert.multitask import collate
from mtbert.train import Trainer
from mtbert.train.smart import Smart, project

from conftest import stop_at
from test_train_cli import tiny_overrides


@pytest.fixture()
def trainer(tmp_path, tiny_checkpoint, data_dir):
    overrides = tiny_overrides(tiny_checkpoint, data_dir, **{"train.smart": "{enabled: true}", "train.epochs": 1})
    return Trainer(load_config("recipes/multitask-base.yaml", overrides), tmp_path / "run")


def smart_with(trainer, **options) -> Smart:
    return Smart(SmartConfig(enabled=True, **options), trainer.model, 20, {})


def batch(trainer, task="sts", size=8):
    return collate(trainer.data[task].get("train"), list(range(size)))


def test_adversarial_term_vanishes_with_epsilon_and_sigma_and_has_gradient_otherwise(trainer):
    model = trainer.model.train()
    for task in ("sst", "quora", "sts"):
        tiny = smart_with(trainer, epsilon=1e-12, sigma=1e-12).adversarial_loss(model, batch(trainer, task))
        assert tiny.item() < 1e-9, task
    model.zero_grad()
    large = smart_with(trainer, epsilon=0.5, sigma=0.1, step_size=0.5).adversarial_loss(model, batch(trainer, "sst"))
    assert large.item() > 1e-6
    large.backward()
    for name in ("embeddings.word_embeddings.weight", "layers.0.attention.qkv.weight"):
        grad = dict(model.encoder.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_dropout_in_the_adversarial_passes_keeps_the_term_from_vanishing(trainer):
    model = trainer.model.train()
    smart = smart_with(trainer, epsilon=1e-12, sigma=1e-12, adversarial_dropout=True)
    assert smart.adversarial_loss(model, batch(trainer, "sst")).item() > 1e-6  # two dropout masks (report 004)
    assert model.training and model.encoder.layers[0].dropout.training  # modes restored after the passes


@pytest.mark.parametrize("norm", ["inf", "l2"])
def test_perturbation_stays_inside_the_ball(trainer, norm):
    smart = smart_with(trainer, epsilon=0.01, sigma=0.05, step_size=0.1, steps=3, norm=norm)
    smart.adversarial_loss(trainer.model, batch(trainer))
    delta = smart.last_delta
    per_token = delta.abs().amax(-1) if norm == "inf" else delta.norm(dim=-1)
    assert per_token.max().item() <= 0.01 * (1 + 1e-5) and per_token.max().item() > 0.005
    x = torch.randn(4, 3, 8)
    assert torch.allclose(project(x * 1e-4, 1.0, norm), x * 1e-4)  # inside: unchanged


def test_teacher_follows_the_ema_formula_and_beta_schedule(trainer):
    smart = smart_with(trainer, beta=0.9, beta_late=0.99, beta_warmup=0.1)  # 20 updates: 2 at β = 0.9
    model = trainer.model
    parameter = model.heads["sst"].output.bias
    teacher_parameter = smart.teacher.heads["sst"].output.bias
    betas = []
    for _ in range(3):
        with torch.no_grad():
            parameter.add_(1.0)
        before = teacher_parameter.clone()
        betas.append(smart.beta())
        smart.after_update(model)
        assert torch.allclose(teacher_parameter, (1 - betas[-1]) * parameter + betas[-1] * before)
    assert betas == [0.9, 0.9, 0.99]
    state = smart.state_dict()
    again = smart_with(trainer)
    again.load_state_dict(state)
    assert again.updates == 3 and torch.equal(again.teacher.heads["sst"].output.bias, teacher_parameter)


def test_non_finite_adversarial_gradient_skips_the_term_and_training_goes_on(trainer):
    smart = trainer.smart
    real = smart.divergence
    calls = []

    def nan_in_the_ascent(a, b, kind=None):  # the first divergence of a batch is the noised pass's
        calls.append(kind)
        value = real(a, b, kind)
        return value * float("nan") if len(calls) == 1 else value

    smart.divergence = nan_in_the_ascent
    step = trainer.epoch_plan(0)[0]
    task = step[0][0]
    before = trainer.model.heads[task].output.weight.clone()
    loss = trainer.train_step(step)
    assert smart.counters["smart_skipped"] == 1 and loss == loss  # a finite loss: the step was taken
    assert trainer.counters["skipped_nonfinite"] == 0
    assert not torch.equal(before, trainer.model.heads[task].output.weight)


def test_smart_run_resumes_exactly_with_its_teacher(tmp_path, tiny_checkpoint, data_dir):
    settings = {"train.smart": "{enabled: true, tasks: [sst, sts], task_weights: {sts: 5.0}}",
                "train.checkpoint_every": 0, "data.limit": 20}
    config = load_config("recipes/multitask-base.yaml", tiny_overrides(tiny_checkpoint, data_dir, **settings))
    whole = Trainer(config, tmp_path / "whole").train()

    Trainer(config, tmp_path / "cut", callbacks=[stop_at(3)]).train()
    resumed = Trainer(config, tmp_path / "cut").train(resume=True)
    assert resumed["best"] == whole["best"]
    ours = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["smart"]
    theirs = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)["smart"]
    assert ours["updates"] == theirs["updates"] > 0
    assert all(torch.equal(ours["teacher"][k], theirs["teacher"][k]) for k in theirs["teacher"])


def test_smart_settings_are_checked(tmp_path, tiny_checkpoint, data_dir):
    for setting, message in (("{enabled: true, norm: l1}", "norm must be one of inf, l2"),
                             ("{enabled: true, tasks: [nli]}", "train.smart names nli")):
        config = load_config("recipes/multitask-base.yaml",
                             tiny_overrides(tiny_checkpoint, data_dir, **{"train.smart": setting}))
        with pytest.raises(ValueError, match=message):
            Trainer(config, tmp_path / "bad")


def test_smart_runs_under_bf16_autocast_with_every_pair_head(tmp_path, tiny_checkpoint, data_dir):
    heads = "{quora: {type: relational}, sts: {type: cosine}, sst: {type: transformer_layer}}"
    settings = {"train.smart": "{enabled: true}", "train.precision": "bf16", "model.heads": heads,
                "train.max_steps": 3, "data.limit": 8, "train.batch_size": 4}
    config = load_config("recipes/multitask-base.yaml", tiny_overrides(tiny_checkpoint, data_dir, **settings))
    trainer = Trainer(config, tmp_path / "bf16")
    assert trainer.precision.name == "bf16"
    results = trainer.train()
    assert results["steps"] == 3 and results["skipped_nonfinite_batches"] == 0
