"""Loss balancers: how the losses of the tasks in one step become one objective.

A balancer returns one term per task (``terms``); the objective is their sum. Keeping the terms apart
lets gradient surgery (PCGrad, CAGrad) take each task's gradient of its own term. An auxiliary
objective (sentiment augmentation) belongs to the model task whose head it trains (its *group*):
gradient surgery sees one gradient per model task (``by_task``), as report 003's PCGrad over its
three task losses does, and the mean averages over model tasks. Balancers with
learned weights are modules: their parameters join the optimizer (without weight decay) and the
checkpoint.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..registry import Registry

LOSS_BALANCERS: Registry[type["LossBalancer"]] = Registry("loss balancer")
register_balancer = LOSS_BALANCERS.register
Losses = dict[str, torch.Tensor]


class LossBalancer(nn.Module):
    registry_name = ""

    def __init__(self, kinds: dict[str, str], groups: Optional[dict[str, str]] = None):
        """``kinds``: each training task's kind (classification, binary, regression), in task order;
        ``groups``: the model task an auxiliary objective belongs to (a task missing here is its own)."""
        super().__init__()
        self.tasks = list(kinds)
        self.kinds = dict(kinds)
        self.groups = {task: (groups or {}).get(task, task) for task in self.tasks}

    def terms(self, losses: Losses, examples: dict[str, int]) -> Losses:
        raise NotImplementedError

    def by_task(self, terms: Losses) -> Losses:
        """The terms summed per model task (an augmentation's term joins its head task's)."""
        grouped: Losses = {}
        for task, term in terms.items():
            group = self.groups.get(task, task)
            grouped[group] = grouped[group] + term if group in grouped else term
        return grouped

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
    """(1/k) Σ L_t over the k model tasks in the step, each L_t its task's mean loss; an augmentation's
    (weighted) loss counts within its head task (report 003: ℓ = (ℓ_sentiment + ℓ_paraphrase +
    ℓ_similarity)/3 with ℓ_sentiment = ½ℓ_sst + ⅙ℓ_cfimdb + ⅙ℓ_quora + ⅙ℓ_sts)."""

    def terms(self, losses: Losses, examples: dict[str, int]) -> Losses:
        count = len({self.groups.get(task, task) for task in losses})
        return {task: loss / count for task, loss in losses.items()}


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

    def __init__(self, kinds: dict[str, str], groups: Optional[dict[str, str]] = None):
        super().__init__(kinds, groups)
        self.logits = nn.Parameter(torch.zeros(len(self.tasks)))

    def terms(self, losses: Losses, examples: dict[str, int]) -> Losses:
        index = [self.tasks.index(task) for task in losses]
        weights = len(index) * torch.softmax(self.logits[index], 0)
        return {task: loss * weights[i] for i, (task, loss) in enumerate(losses.items())}

    def weights(self) -> dict[str, float]:
        values = len(self.tasks) * torch.softmax(self.logits.detach(), 0)
        return {task: float(values[i]) for i, task in enumerate(self.tasks)}


class _LearnedLogVariances(LossBalancer):
    """s_t = log σ_t² learned per task; a term is c_t·e^(−s)·L + ½s (½s = log σ keeps σ from growing
    without bound)."""

    def __init__(self, kinds: dict[str, str], groups: Optional[dict[str, str]] = None):
        super().__init__(kinds, groups)
        self.log_variances = nn.Parameter(torch.zeros(len(self.tasks)))

    def scale(self, task: str) -> float:
        raise NotImplementedError

    def terms(self, losses: Losses, examples: dict[str, int]) -> Losses:
        out = {}
        for task, loss in losses.items():
            s = self.log_variances[self.tasks.index(task)]
            out[task] = self.scale(task) * torch.exp(-s) * loss + 0.5 * s
        return out

    def weights(self) -> dict[str, float]:
        return {task: self.scale(task) * float(torch.exp(-self.log_variances[i].detach()))
                for i, task in enumerate(self.tasks)}


@register_balancer("uncertainty")
class UncertaintyBalancer(_LearnedLogVariances):
    """Report 000's uncertainty weighting: Σ_t 1/(2σ_t²)·L_t + log σ_t for every task, whatever its
    kind (½e^(−s)·L + ½s)."""

    def scale(self, task: str) -> float:
        return 0.5


@register_balancer("uncertainty_by_kind")
class UncertaintyByKindBalancer(_LearnedLogVariances):
    """Kendall, Gal and Cipolla (2018)'s per-likelihood forms: a regression (Gaussian) loss
    1/(2σ²)·L + log σ, a classification (softmax or Bernoulli) loss 1/σ²·L + log σ."""

    def scale(self, task: str) -> float:
        return 0.5 if self.kinds[task] == "regression" else 1.0


def build_balancer(name: str, kinds: dict[str, str], groups: Optional[dict[str, str]] = None) -> LossBalancer:
    return LOSS_BALANCERS.get(name)(kinds, groups)
