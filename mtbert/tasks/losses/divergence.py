"""Divergences between two outputs of the model on the same inputs (SMART's smoothness term and its
proximal term; consistency between two dropout passes)."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from ..spec import TaskSpec
from .base import Loss, register_loss


def _symmetric_kl_from_log_probs(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p‖q) + KL(q‖p) = Σ (p − q)(log p − log q), per row."""
    return ((log_p.exp() - log_q.exp()) * (log_p - log_q)).sum(-1)


def _log_distributions(a: torch.Tensor, b: torch.Tensor, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Both outputs as log-probabilities over their labels: softmax over logits (classification), the
    Bernoulli of a single logit (binary)."""
    if kind == "classification":
        return F.log_softmax(a, -1), F.log_softmax(b, -1)
    as_two = lambda x: torch.stack([F.logsigmoid(-x), F.logsigmoid(x)], -1)  # noqa: E731
    return as_two(a), as_two(b)


@register_loss("symmetric_kl")
class SymmetricKL(Loss):
    """KL(p‖q) + KL(q‖p), mean over the batch, for the task's kind of output: softmax over logits
    (classification), Bernoulli of a single logit (binary), and for a regression score, where no
    distribution exists, the squared difference (as SMART does)."""

    role = "divergence"

    def __init__(self, spec: Optional[TaskSpec] = None):
        super().__init__(spec)

    def between(self, log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
        return _symmetric_kl_from_log_probs(log_p, log_q)

    def __call__(self, a: torch.Tensor, b: torch.Tensor, kind: Optional[str] = None) -> torch.Tensor:
        kind = kind or self.spec.kind
        a, b = a.float(), b.float()
        if kind == "regression":
            return ((a - b) ** 2).mean()
        return self.between(*_log_distributions(a, b, kind)).mean()


@register_loss("kl")
class KL(SymmetricKL):
    """KL(p‖q) of the first output's distribution p from the second's q, mean over the batch (the squared
    difference for a score): the one-way divergence report 003 names for its sentiment consistency,
    where ``symmetric_kl`` adds KL(q‖p)."""

    def between(self, log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
        return (log_p.exp() * (log_p - log_q)).sum(-1)
