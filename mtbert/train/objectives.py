"""What a training task's batch costs: the model's forward and the task's loss, times the task's weight.

A task of the model goes through its own head and label loss; an augmentation computes its loss its
own way (through another task's head). The step runner only ever calls ``objective(model, batch)``.
"""

from __future__ import annotations

import torch

from ..multitask import Batch, MultitaskModel
from ..multitask.augmentation import Augmentation
from ..tasks.losses import LabelLoss


class Objective:
    def __init__(self, weight: float = 1.0):
        self.weight = weight

    def loss(self, model: MultitaskModel, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, model: MultitaskModel, batch: Batch) -> torch.Tensor:
        loss = self.loss(model, batch)
        return loss if self.weight == 1.0 else self.weight * loss

    @property
    def plain(self) -> "Objective":
        """The objective without regularisers (parameter selection's gradient pass uses it)."""
        return self


class LabelObjective(Objective):
    def __init__(self, label_loss: LabelLoss, weight: float = 1.0):
        super().__init__(weight)
        self.label_loss = label_loss

    def loss(self, model: MultitaskModel, batch: Batch) -> torch.Tensor:
        return self.label_loss(model(batch), batch.labels)


class AugmentationObjective(Objective):
    def __init__(self, augmentation: Augmentation, weight: float = 1.0):
        super().__init__(weight)
        self.augmentation = augmentation

    def loss(self, model: MultitaskModel, batch: Batch) -> torch.Tensor:
        return self.augmentation.loss(model, batch)


class SmartObjective(Objective):
    """A task's label objective plus SMART's regulariser for the same batch."""

    def __init__(self, inner: LabelObjective, smart):
        super().__init__(inner.weight)
        self.inner, self.smart = inner, smart

    @property
    def plain(self) -> Objective:
        return self.inner

    def __call__(self, model: MultitaskModel, batch: Batch) -> torch.Tensor:
        label = self.inner.loss(model, batch)  # the label loss (mixed with a teacher's, when distilled)
        return self.weight * label + self.smart.regularizer(model, batch)
