"""Losses, one class each, registered by name: label losses (a task's training loss), divergences and
parameter penalties. Importing this package registers the built-ins."""

from __future__ import annotations

import torch

from . import contrastive, divergence, label, penalty  # noqa: F401  (registration)
from .base import DEFAULT_LOSS, LOSSES, LabelLoss, Loss, SumOfLosses, build_task_loss, positive_mask, register_loss
from .divergence import SymmetricKL
from .penalty import L2Penalty
from ..spec import TaskSpec

get_loss = LOSSES.get


def predictions_from_outputs(outputs: torch.Tensor, spec: TaskSpec) -> torch.Tensor:
    """What a head's raw output predicts: a class, 0/1, or a score clamped to the task's range."""
    outputs = outputs.float()
    if spec.kind == "classification":
        return outputs.argmax(-1)
    if spec.kind == "binary":
        return (outputs > 0).long()
    return outputs.clamp(*spec.label_range)


__all__ = [
    "DEFAULT_LOSS", "L2Penalty", "LOSSES", "LabelLoss", "Loss", "SumOfLosses", "SymmetricKL", "build_task_loss",
    "get_loss", "positive_mask", "predictions_from_outputs", "register_loss",
]
