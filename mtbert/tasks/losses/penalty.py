"""Penalties on the parameters themselves, added to the training loss (``train.penalties``)."""

from __future__ import annotations

from typing import Iterable

import torch

from .base import Loss, register_loss


@register_loss("l2")
class L2Penalty(Loss):
    """Σ‖θ‖² over the given parameters: the explicit L2 term of report 002, in the loss and therefore in
    Adam's moments, unlike AdamW's decoupled weight decay. The trainer applies it to the parameters
    that get weight decay (weights, not biases or LayerNorm gains), times the configured weight."""

    role = "penalty"

    def __init__(self, spec=None):
        super().__init__(spec)

    def __call__(self, parameters: Iterable[torch.Tensor]) -> torch.Tensor:
        squares = [p.float().pow(2).sum() for p in parameters]
        return torch.stack(squares).sum() if squares else torch.zeros(())
