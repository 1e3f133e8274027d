"""SMART: the adversarial term's limits and gradient, the ε-ball, the EMA teacher, NaN safety, and a
run that resumes exactly with its teacher."""

from __future__ import annotations

import contextlib

import pytest
import torch

from mtbert.config import SmartConfig, load_config
from mtbert.multitask import collate
from mtbert.train import Trainer
from mtbert.train.smart import Smart, ascent_direction, project

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

    def nan_in_the_ascent(a, b, kind=None):  # a batch's divergences: the proximal term's, then the noised pass's
        calls.append(kind)
        value = real(a, b, kind)
        return value * float("nan") if len(calls) == 2 else value

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
                             ("{enabled: true, tasks: [nli]}", "train.smart names nli"),
                             ("{enabled: true, precision: bf16}", "precision must be one of fp32, autocast"),
                             ("{enabled: true, ascent_scope: layer}", "ascent_scope must be one of token, batch")):
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


def first_layer_inputs(model):
    """What the first attention projection multiplies, per forward call: its input cast to the dtype
    autocast gives that product (bf16 under bf16 autocast, else as it is)."""
    seen = []
    linear = model.encoder.layers[0].attention.qkv

    def hook(module, args):
        x = args[0]
        if torch.is_autocast_enabled(x.device.type):
            x = x.to(torch.get_autocast_dtype(x.device.type))
        seen.append(x.detach().float())
    return seen, linear.register_forward_pre_hook(hook)


def adversarial_under(trainer, autocast: bool, epsilon: float, precision: str = "fp32"):
    """R_s of one SST batch and the largest perturbation the first layer's product sees."""
    smart = smart_with(trainer, epsilon=epsilon, sigma=epsilon, precision=precision, proximal=False)
    seen, handle = first_layer_inputs(trainer.model)
    torch.manual_seed(0)
    context = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    try:
        with context:
            value = smart.adversarial_loss(trainer.model, batch(trainer, "sst", size=16)).item()
    finally:
        handle.remove()
    reference, adversarial = seen[0], seen[-1]
    return value, (adversarial - reference).abs().max().item(), smart.last_delta.abs().max().item()


@pytest.mark.parametrize("epsilon", [1e-5, 1e-6])
def test_adversarial_step_under_bf16_autocast_matches_fp32(trainer, epsilon):
    """Under bf16 autocast x + δ with δ ~ 1e-5 rounds back to x for most entries and to x ± 4e-3·|x| for a
    few: R_s and the perturbation the first layer sees must not depend on the run's precision."""
    trainer.model.train()
    fp32 = adversarial_under(trainer, autocast=False, epsilon=epsilon)
    bf16 = adversarial_under(trainer, autocast=True, epsilon=epsilon)
    assert fp32[0] > 0 and fp32[1] == pytest.approx(epsilon, rel=0.3)
    for ours, reference in zip(bf16, fp32):
        assert ours == pytest.approx(reference, rel=0.1), (bf16, fp32)


def test_adversarial_step_in_autocast_is_what_fp32_prevents(trainer):
    """The opt-in ``precision: autocast`` shows the fault the default avoids: the first layer sees
    perturbations far larger than ε."""
    trainer.model.train()
    _, seen, _ = adversarial_under(trainer, autocast=True, epsilon=1e-5, precision="autocast")
    assert seen > 10 * 1e-5


def test_proximal_term_is_exactly_zero_when_the_weights_equal_the_teachers(trainer):
    """Both sides without dropout: at θ = θ̃ the term is 0, in train mode, for every kind of task."""
    model = trainer.model.train()
    smart = smart_with(trainer, weight=0.0)  # the teacher is a copy of the weights now
    for task in ("sst", "quora", "sts"):
        value = smart.regularizer(model, batch(trainer, task)).item()
        assert value == 0.0, (task, value)
    assert model.training and model.encoder.layers[0].dropout.training


def test_the_proximal_pass_serves_as_the_adversarial_reference(trainer):
    """With dropout off in both, R_s's reference is the student's pass: the total at θ = θ̃ is λ·R_s
    alone, the same as without the proximal term."""
    model = trainer.model.train()
    alone = smart_with(trainer, proximal=False, epsilon=1e-3, sigma=1e-3)
    both = smart_with(trainer, epsilon=1e-3, sigma=1e-3)
    data = batch(trainer, "sst")
    torch.manual_seed(1)
    expected = alone.regularizer(model, data).item()
    torch.manual_seed(1)
    assert both.regularizer(model, data).item() == pytest.approx(expected, rel=1e-6) and expected > 0


@pytest.mark.parametrize("norm", ["inf", "l2"])
def test_the_ascent_is_normalised_per_token_or_over_the_whole_batch(norm):
    grad = torch.tensor([[[3.0, -4.0], [0.3, 0.4]], [[0.0, 1.0], [6.0, 8.0]]])
    per_token = ascent_direction(grad, norm)
    whole = ascent_direction(grad, norm, "batch")
    size = (lambda x: x.abs().amax(-1)) if norm == "inf" else (lambda x: x.norm(dim=-1))
    assert torch.allclose(size(per_token), torch.ones(2, 2))  # every token a unit step
    total = grad.abs().amax() if norm == "inf" else grad.norm()
    assert torch.allclose(whole, grad / total)  # one scale: a small token's step stays small
    assert float(size(whole)[0, 1]) == pytest.approx(float(size(grad)[0, 1] / total))
