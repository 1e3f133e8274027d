"""Weight averaging: evaluate, keep and save an average of the weights along the training trajectory
instead of the last iterate.

Fine-tuning on small sets ends wherever the last few noisy batches left the weights; an average of
recent weights sits nearer the middle of the region they wander in and usually scores steadier on
dev (Polyak-Juditsky averaging; "EMA" of the weights as in many fine-tuning codebases; stochastic
weight averaging, Izmailov et al. 2018, for the uniform mean). The trained weights themselves keep
training unchanged: the average is a shadow copy, updated after every optimizer update, put into the
model only while it is evaluated or saved (``applied``). ``checkpoint.pt`` holds both, so ``--resume``
continues the average exactly.

Methods (``train.averaging``, options in ``train.averaging_options``):

- ``ema``: exponential moving average, shadow ← shadow + w·(θ − shadow) with w = 1 − β_t and
  β_t = min(decay, (1 + t)/(10 + t)) after update t: early on the average follows the weights closely,
  so the first evaluations are not dominated by the pretrained start.
- ``uniform``: the plain mean of the weights after every update from ``start`` (a share of all updates)
  on; before that the average is the current weights (the shadow is left alone until the start).
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch
from torch import nn

from ..registry import Registry, check_options

WEIGHT_AVERAGES: Registry[type["WeightAverage"]] = Registry("weight average (train.averaging)")


class WeightAverage:
    """The shadow copy of the trainable parameters and its update rule (``new_weight``). Parameters that
    do not train (a frozen encoder) are not copied: their average is themselves."""

    def __init__(self, model: nn.Module, total_updates: int):
        """``total_updates``: the run's optimizer updates, for methods whose rule depends on them."""
        self.parameters = [p for p in model.parameters() if p.requires_grad and p.is_floating_point()]
        self.shadow = [p.detach().clone() for p in self.parameters]
        self.updates = 0

    def new_weight(self) -> float:
        """The share of the current weights in the average after update ``self.updates`` (1 = replace)."""
        raise NotImplementedError

    def started(self) -> bool:
        """Whether the average has begun. Before it has, the average *is* the current weights: the shadow
        is neither updated (a copy of 22.7M weights per step costs a MiniLM step about 5%) nor applied."""
        return True

    @torch.no_grad()
    def update(self) -> None:
        """After every optimizer update."""
        self.updates += 1
        if self.started():
            torch._foreach_lerp_(self.shadow, [p.detach() for p in self.parameters], self.new_weight())

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """The average in the model's parameters for the duration; the trained weights back after."""
        if not self.started():
            yield
            return
        with torch.no_grad():
            trained = [p.detach().clone() for p in self.parameters]
            for parameter, average in zip(self.parameters, self.shadow):
                parameter.copy_(average)
        try:
            yield
        finally:
            with torch.no_grad():
                for parameter, weights in zip(self.parameters, trained):
                    parameter.copy_(weights)

    def state_dict(self) -> dict:
        return {"updates": self.updates, "shadow": [s.clone() for s in self.shadow]}

    def load_state_dict(self, state: dict) -> None:
        shadow = state["shadow"]
        if len(shadow) != len(self.shadow) or any(s.shape != t.shape for s, t in zip(shadow, self.shadow)):
            raise ValueError("the checkpoint's weight average does not match this model's trainable parameters "
                             f"({len(shadow)} tensors saved, {len(self.shadow)} here): was it written with "
                             "another model or freeze setting?")
        self.updates = state["updates"]
        with torch.no_grad():
            for target, saved in zip(self.shadow, shadow):
                target.copy_(saved)


@WEIGHT_AVERAGES.register("ema")
class ExponentialAverage(WeightAverage):
    def __init__(self, model: nn.Module, total_updates: int, decay: float = 0.999):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"train.averaging_options.decay must lie strictly between 0 and 1, got {decay}")
        super().__init__(model, total_updates)
        self.decay = decay

    def new_weight(self) -> float:
        t = self.updates
        return 1.0 - min(self.decay, (1.0 + t) / (10.0 + t))


@WEIGHT_AVERAGES.register("uniform")
class UniformAverage(WeightAverage):
    def __init__(self, model: nn.Module, total_updates: int, start: float = 0.5):
        if not 0.0 <= start < 1.0:
            raise ValueError(f"train.averaging_options.start is a share of the updates in [0, 1), got {start}")
        super().__init__(model, total_updates)
        self.start_update = int(start * total_updates)

    def started(self) -> bool:
        return self.updates >= self.start_update

    def new_weight(self) -> float:
        averaged = self.updates - self.start_update  # iterates in the mean besides the one it started from
        return 1.0 if averaged <= 0 else 1.0 / (averaged + 1)


def build_weight_average(name: str, options: dict, model: nn.Module, total_updates: int) -> Optional[WeightAverage]:
    """The configured average, or None when ``train.averaging`` is empty."""
    if not name:
        return None
    average_class = WEIGHT_AVERAGES.get(name)
    check_options(average_class, options, f"train.averaging {name!r}", supplied=("model", "total_updates"))
    return average_class(model, total_updates, **options)
