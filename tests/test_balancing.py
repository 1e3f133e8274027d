"""Loss balancers against their formulas; gradient surgery on known gradients."""

from __future__ import annotations

import math

import pytest
import torch

from mtbert.multitask import LOSS_BALANCERS, build_balancer, build_surgery
from mtbert.tasks import TASKS

SPECS = {name: TASKS[name].kind for name in ("sst", "quora", "sts")}
LOSSES = {"sst": torch.tensor(1.5), "quora": torch.tensor(0.5), "sts": torch.tensor(2.0)}
EXAMPLES = {"sst": 10, "quora": 20, "sts": 10}


def total(name: str, losses=LOSSES, examples=EXAMPLES) -> float:
    return float(sum(build_balancer(name, SPECS).terms(losses, examples).values()).detach())


def test_every_balancer_is_covered_here():
    assert set(LOSS_BALANCERS) == {"sum", "mean", "examples", "dynamic", "learned", "uncertainty",
                                   "uncertainty_by_kind"}


def test_fixed_rules_match_their_formulas():
    assert total("sum") == pytest.approx(4.0)
    assert total("mean") == pytest.approx(4.0 / 3)
    assert total("examples") == pytest.approx((10 * 1.5 + 20 * 0.5 + 10 * 2.0) / 40)


def test_dynamic_weights_are_total_over_t_times_own_loss_and_detached():
    losses = {task: value.clone().requires_grad_() for task, value in LOSSES.items()}
    terms = build_balancer("dynamic", SPECS).terms(losses, EXAMPLES)
    for task in losses:
        assert terms[task].item() == pytest.approx(4.0 / 3)  # w_t·L_t = L_total / T
    sum(terms.values()).backward()
    for task, loss in losses.items():
        assert loss.grad.item() == pytest.approx(4.0 / (3 * LOSSES[task].item()))  # the weight, as a constant


def test_learned_weights_are_a_softmax_summing_to_the_task_count():
    balancer = build_balancer("learned", SPECS)
    with torch.no_grad():
        balancer.logits.copy_(torch.tensor([0.0, 1.0, -1.0]))
    weights = 3 * torch.softmax(torch.tensor([0.0, 1.0, -1.0]), 0)
    assert total_of(balancer) == pytest.approx(float((weights * torch.stack(list(LOSSES.values()))).sum()))
    assert sum(balancer.weights().values()) == pytest.approx(3.0)
    two = balancer.terms({"sst": LOSSES["sst"], "sts": LOSSES["sts"]}, EXAMPLES)  # a step with two of the tasks
    pair = 2 * torch.softmax(torch.tensor([0.0, -1.0]), 0)
    assert float(sum(two.values()).detach()) == pytest.approx(float(pair[0] * 1.5 + pair[1] * 2.0))


def total_of(balancer) -> float:
    return float(sum(balancer.terms(LOSSES, EXAMPLES).values()).detach())


def test_uncertainty_weighting_is_report_000s_form_for_every_task():
    """Report 000: Σ 1/(2σ_t²)·L_t + log σ_t over the three tasks, whatever their kind."""
    balancer = build_balancer("uncertainty", SPECS)
    s = torch.tensor([0.3, -0.2, 0.7])
    with torch.no_grad():
        balancer.log_variances.copy_(s)
    sigma_squared = torch.exp(s)
    expected = sum(float(loss / (2 * sigma_squared[i]) + 0.5 * torch.log(sigma_squared[i]))
                   for i, loss in enumerate(LOSSES.values()))
    assert total_of(balancer) == pytest.approx(expected, rel=1e-6)
    assert balancer.weights()["sst"] == pytest.approx(0.5 * math.exp(-0.3), rel=1e-6)


def test_uncertainty_by_kind_uses_kendalls_two_forms():
    balancer = build_balancer("uncertainty_by_kind", SPECS)
    s = torch.tensor([0.3, -0.2, 0.7])
    with torch.no_grad():
        balancer.log_variances.copy_(s)
    expected = (math.exp(-0.3) * 1.5 + 0.15) + (math.exp(0.2) * 0.5 - 0.1) + (0.5 * math.exp(-0.7) * 2.0 + 0.35)
    assert total_of(balancer) == pytest.approx(expected, rel=1e-6)
    terms = balancer.terms(LOSSES, EXAMPLES)
    sum(terms.values()).backward()
    # d/ds (e^{-s} L + s/2) = −e^{-s} L + 1/2, for the classification form
    assert balancer.log_variances.grad[0].item() == pytest.approx(-math.exp(-0.3) * 1.5 + 0.5, rel=1e-6)


def test_pcgrad_projects_conflicts_and_leaves_agreement_alone():
    pcgrad = build_surgery("pcgrad")
    agreeing = torch.tensor([[1.0, 0.5], [0.5, 1.0]])
    assert torch.allclose(pcgrad(agreeing), agreeing.sum(0))
    conflicting = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
    projected_first = torch.tensor([1.0, 0.0]) - (-1.0 / 2.0) * torch.tensor([-1.0, 1.0])  # [0.5, 0.5]
    projected_second = torch.tensor([-1.0, 1.0]) - (-1.0 / 1.0) * torch.tensor([1.0, 0.0])  # [0, 1]
    assert torch.allclose(pcgrad(conflicting), projected_first + projected_second)
    assert float(projected_first @ conflicting[1]) >= 0 and float(projected_second @ conflicting[0]) >= 0


def test_pcgrad_leaves_no_conflict_with_any_original_gradient_for_two_tasks():
    torch.manual_seed(0)
    for _ in range(20):
        grads = torch.randn(2, 16)
        combined = build_surgery("pcgrad")(grads)
        if float(grads[0] @ grads[1]) < 0:
            for g in grads:
                assert float(combined @ g) >= -1e-5


def test_cagrad_reduces_to_the_summed_gradient_without_conflict_scale():
    cagrad = build_surgery("cagrad", {"c": 0.0})
    grads = torch.tensor([[1.0, 0.0], [-1.0, 2.0], [0.5, 0.5]])
    assert torch.allclose(cagrad(grads), grads.sum(0), atol=1e-6)


def test_cagrad_improves_the_worst_task_over_the_average_direction():
    grads = torch.tensor([[1.0, 0.0], [-0.9, 0.3]])
    direction = build_surgery("cagrad", {"c": 0.5})(grads)
    average = grads.mean(0)
    assert min(float(direction @ g) for g in grads) > min(float(average @ g) for g in grads)


def test_unknown_surgery_and_options_are_named():
    assert build_surgery("none") is None
    with pytest.raises(ValueError, match="unknown gradient surgery 'gradnorm'"):
        build_surgery("gradnorm")
    with pytest.raises(ValueError, match="bad train.surgery_options"):
        build_surgery("pcgrad", {"c": 1})


AUGMENTED_KINDS = {**SPECS, "cfimdb_to_sst": "classification", "quora_sentiment_consistency": "classification"}
AUGMENTED_GROUPS = {"cfimdb_to_sst": "sst", "quora_sentiment_consistency": "sst"}


def test_mean_averages_over_model_tasks_with_augmentations_inside_sentiment():
    """Report 003: (ℓ_sentiment + ℓ_paraphrase + ℓ_similarity) / 3, ℓ_sentiment holding the (already
    weighted) augmentation losses: five objectives in the step, three tasks to average over."""
    losses = {**LOSSES, "cfimdb_to_sst": torch.tensor(0.6), "quora_sentiment_consistency": torch.tensor(0.3)}
    balancer = build_balancer("mean", AUGMENTED_KINDS, AUGMENTED_GROUPS)
    terms = balancer.terms(losses, {task: 8 for task in losses})
    assert float(sum(terms.values())) == pytest.approx((1.5 + 0.6 + 0.3 + 0.5 + 2.0) / 3)
    grouped = balancer.by_task(terms)
    assert set(grouped) == {"sst", "quora", "sts"}
    assert float(grouped["sst"]) == pytest.approx((1.5 + 0.6 + 0.3) / 3)


def test_gradient_surgery_sees_one_gradient_per_model_task(tmp_path, tiny_checkpoint, data_dir):
    """With sentiment augmentation and PCGrad, the surgery combines three task gradients, the
    augmentations' inside sentiment's (report 003), not one per objective."""
    from mtbert.config import load_config
    from mtbert.train import Trainer
    from test_train_cli import tiny_overrides

    settings = {"data.augment": "[cfimdb_to_sst, quora_sentiment_consistency]", "train.schedule": "mixed",
                "train.balancer": "mean", "train.surgery": "pcgrad", "train.max_steps": 1, "data.limit": 24}
    trainer = Trainer(load_config("recipes/multitask-base.yaml", tiny_overrides(tiny_checkpoint, data_dir, **settings)),
                      tmp_path / "run")
    rows = []
    surgery = trainer.runner.surgery
    trainer.runner.surgery = lambda gradients, generator: rows.append(len(gradients)) or surgery(gradients, generator)
    step = trainer.epoch_plan(0)[0]
    assert len(step) == 5
    trainer.train_step(step)
    assert rows == [3]
