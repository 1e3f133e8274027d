"""Loss balancers: how the losses of the tasks in one step become one objective.

A balancer returns one term per task (``terms``); the objective is their sum. Keeping the terms apart
lets gradient surgery (PCGrad, CAGrad) take each task's gradient of its own term. Balancers with
learned weights are modules: their parameters join the optimizer (without weight decay) and the
checkpoint.
"""

from __future__ import annotations

import torch
from torch import nn

from ..registry import Registry

LOSS_BALANCERS: Registry[type["LossBalancer"]] = Registry("loss balancer")
register_balancer = LOSS_BALANCERS.register
Losses = dict[str, torch.Tensor]


class LossBalancer(nn.Module):
    registry_name = ""

    def __init__(self, kinds: dict[str, str]):
        """``kinds``: each training task's kind (classification, binary, regression), in task order."""
        super().__init__()
        self.tasks = list(kinds)
        self.kinds = dict(kinds)

    def terms(self, losses: Losses, examples: dict[str, int]) -> Losses:
        raise NotImplementedError

    def weights(self) -> dict[str, float]:
        """Current weights for the log (learned balancers); empty for fixed rules."""
        return {}


@register_balancer("sum")
class SumBalancer(LossBalancer):
    """Σ L_t: every task's loss as it is."""

    def terms(self, losses: Losses, examples: dict[str, int]) -> Losses:
        return dict(losses)


@register_balancer("mean")
class MeanBalancer(LossBalancer):
    """(1/k) Σ L_t over the k tasks in the step."""

    def terms(self, losses: Losses, examples: dict[str, int]) -> Losses:
        return {task: loss / len(losses) for task, loss in losses.items()}


@register_balancer("examples")
class ExampleMeanBalancer(LossBalancer):
    """Σ (n_t / N) L_t: one loss averaged over all the step's examples, whatever their task (report
    003's mixed batches)."""

    def terms(self, losses: Losses, examples: dict[str, int]) -> Losses:
        total = sum(examples[task] for task in losses)
        return {task: loss * (examples[task] / total) for task, loss in losses.items()}


@register_balancer("dynamic")
class DynamicBalancer(LossBalancer):
    """w_t = L_total / (k · L_t), detached (report 000): every task's term equals the mean loss, so a task
    whose loss is small gets a proportionally larger gradient, and no task dominates by scale."""

    def terms(self, losses: Losses, examples: dict[str, int]) -> Losses:
        values = {task: loss.detach() for task, loss in losses.items()}
        total = sum(values.values())
        return {task: loss * (total / (len(losses) * values[task].clamp_min(1e-12))) for task, loss in losses.items()}


@register_balancer("learned")
class LearnedBalancer(LossBalancer):
    """w = k · softmax(a) with a learned, over the k tasks in the step.

    Why softmax: free learned weights minimise the objective by shrinking to zero (the loss vanishes,
    nothing is learned); a softmax keeps the weights positive and their sum fixed at k, so the
    objective cannot collapse. They still drift toward the task whose loss is smallest, which is what
    this rule learns; uncertainty weighting balances that drift with its log σ term."""

    def __init__(self, kinds: dict[str, str]):
        super().__init__(kinds)
        self.logits = nn.Parameter(torch.zeros(len(self.tasks)))

    def terms(self, losses: Losses, examples: dict[str, int]) -> Losses:
        index = [self.tasks.index(task) for task in losses]
        weights = len(index) * torch.softmax(self.logits[index], 0)
        return {task: loss * weights[i] for i, (task, loss) in enumerate(losses.items())}

    def weights(self) -> dict[str, float]:
        values = len(self.tasks) * torch.softmax(self.logits.detach(), 0)
        return {task: float(values[i]) for i, task in enumerate(self.tasks)}


@register_balancer("uncertainty")
class UncertaintyBalancer(LossBalancer):
    """Homoscedastic uncertainty weighting (Kendall, Gal and Cipolla 2018), s_t = log σ_t² learned:
    regression 1/(2σ²)·L + log σ = ½e^(−s)·L + ½s; classification (and binary) 1/σ²·L + log σ =
    e^(−s)·L + ½s. The log σ term keeps σ from growing without bound."""

    def __init__(self, kinds: dict[str, str]):
        super().__init__(kinds)
        self.log_variances = nn.Parameter(torch.zeros(len(self.tasks)))

    def terms(self, losses: Losses, examples: dict[str, int]) -> Losses:
        out = {}
        for task, loss in losses.items():
            s = self.log_variances[self.tasks.index(task)]
            scale = 0.5 if self.kinds[task] == "regression" else 1.0
            out[task] = scale * torch.exp(-s) * loss + 0.5 * s
        return out

    def weights(self) -> dict[str, float]:
        return {task: float(torch.exp(-self.log_variances[i].detach())) for i, task in enumerate(self.tasks)}


def build_balancer(name: str, kinds: dict[str, str]) -> LossBalancer:
    return LOSS_BALANCERS.get(name)(kinds)
