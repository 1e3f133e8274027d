"""The usual label losses: cross-entropy (class weights, label smoothing), binary cross-entropy, MSE."""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F

from ..heads import HeadOutput
from ..spec import TaskSpec
from .base import LabelLoss, register_loss

ClassWeights = Union[None, str, Sequence[float]]


def resolve_class_weights(weights: ClassWeights, classes: int, spec: TaskSpec,
                          train_labels: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """A weight per class: given as a list, or ``balanced`` (n / (classes · count_c), as scikit-learn
    computes it) from the training labels."""
    if weights is None:
        return None
    if isinstance(weights, str):
        if weights != "balanced":
            raise ValueError(f"task {spec.name!r}: class_weights is a list of {classes} numbers or 'balanced', "
                             f"not {weights!r}")
        if train_labels is None or len(train_labels) == 0:
            raise ValueError(f"task {spec.name!r}: class_weights 'balanced' needs the training labels")
        counts = torch.bincount(train_labels.long(), minlength=classes).float()
        return len(train_labels) / (classes * counts.clamp_min(1.0))
    if len(weights) != classes:
        raise ValueError(f"task {spec.name!r}: class_weights has {len(weights)} values for {classes} classes")
    return torch.tensor([float(w) for w in weights])


@register_loss("cross_entropy")
class CrossEntropy(LabelLoss):
    kinds = ("classification",)

    def __init__(self, spec: TaskSpec, class_weights: ClassWeights = None, label_smoothing: float = 0.0,
                 train_labels: Optional[torch.Tensor] = None):
        super().__init__(spec)
        self.weights = resolve_class_weights(class_weights, spec.num_labels, spec, train_labels)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"task {spec.name!r}: label_smoothing must be in [0, 1), not {label_smoothing}")
        self.label_smoothing = label_smoothing

    def __call__(self, output: HeadOutput, labels: torch.Tensor) -> torch.Tensor:
        weights = self.weights.to(output.scores.device) if self.weights is not None else None
        return F.cross_entropy(output.scores.float(), labels.long(), weight=weights,
                               label_smoothing=self.label_smoothing)


@register_loss("bce")
class BinaryCrossEntropy(LabelLoss):
    """On one logit. ``class_weights`` [w_negative, w_positive] weight each example by its label."""

    kinds = ("binary",)

    def __init__(self, spec: TaskSpec, class_weights: ClassWeights = None,
                 train_labels: Optional[torch.Tensor] = None):
        super().__init__(spec)
        self.weights = resolve_class_weights(class_weights, 2, spec, train_labels)

    def __call__(self, output: HeadOutput, labels: torch.Tensor) -> torch.Tensor:
        labels = labels.float()
        per_example = F.binary_cross_entropy_with_logits(output.scores.float(), labels, reduction="none")
        if self.weights is None:
            return per_example.mean()
        weights = self.weights.to(labels.device)[labels.long()]
        return (weights * per_example).sum() / weights.sum()


@register_loss("mse")
class MeanSquaredError(LabelLoss):
    """``clamp``: the score clamped to the task's range before the loss, as report 003 trains STS (a
    score beyond 0-5 then gets no gradient back towards the range; off by default)."""

    kinds = ("regression", "binary")

    def __init__(self, spec: TaskSpec, clamp: bool = False):
        super().__init__(spec)
        if clamp and spec.kind != "regression":
            raise ValueError(f"task {spec.name!r}: clamp applies to a regression task's score range")
        self.clamp = bool(clamp)

    def __call__(self, output: HeadOutput, labels: torch.Tensor) -> torch.Tensor:
        scores = output.scores.float()
        if self.clamp:
            scores = scores.clamp(*self.spec.label_range)
        return F.mse_loss(scores, labels.float())
