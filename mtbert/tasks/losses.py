"""Task losses, one function each, registered by name; the task kind picks the default."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..registry import Registry
from .spec import TaskSpec

Loss = Callable[[torch.Tensor, torch.Tensor, TaskSpec], torch.Tensor]
LOSSES: Registry[Loss] = Registry("loss")
register_loss = LOSSES.register
DEFAULT_LOSS = {"classification": "cross_entropy", "binary": "bce", "regression": "mse"}


@register_loss("cross_entropy")
def cross_entropy(outputs: torch.Tensor, labels: torch.Tensor, spec: TaskSpec) -> torch.Tensor:
    return F.cross_entropy(outputs.float(), labels.long())


@register_loss("bce")
def binary_cross_entropy(outputs: torch.Tensor, labels: torch.Tensor, spec: TaskSpec) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(outputs.float(), labels.float())


@register_loss("mse")
def mean_squared_error(outputs: torch.Tensor, labels: torch.Tensor, spec: TaskSpec) -> torch.Tensor:
    return F.mse_loss(outputs.float(), labels.float())


get_loss = LOSSES.get


def predictions_from_outputs(outputs: torch.Tensor, spec: TaskSpec) -> torch.Tensor:
    """What a head's raw output predicts: a class, 0/1, or a score clamped to the task's range."""
    outputs = outputs.float()
    if spec.kind == "classification":
        return outputs.argmax(-1)
    if spec.kind == "binary":
        return (outputs > 0).long()
    return outputs.clamp(*spec.label_range)
