"""Learning-rate schedules as multipliers of the base rate, keyed by name in a registry."""

from __future__ import annotations

import math
from typing import Callable

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from ..registry import Registry

Multiplier = Callable[[int], float]
LR_SCHEDULES: Registry[Callable[[int, int], Multiplier]] = Registry("lr schedule")
register_lr_schedule = LR_SCHEDULES.register


@register_lr_schedule("constant")
def constant(warmup_steps: int, total_steps: int) -> Multiplier:
    return lambda step: min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0


@register_lr_schedule("linear")
def warmup_linear_decay(warmup_steps: int, total_steps: int) -> Multiplier:
    """Linear warm-up to the base rate, then linear decay to zero at ``total_steps``."""

    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return multiplier


@register_lr_schedule("cosine")
def warmup_cosine_decay(warmup_steps: int, total_steps: int) -> Multiplier:
    """Linear warm-up, then half a cosine down to zero at ``total_steps``."""

    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return multiplier


def make_lr_scheduler(optimizer: Optimizer, name: str, warmup_steps: int, total_steps: int) -> LambdaLR:
    return LambdaLR(optimizer, LR_SCHEDULES.get(name)(warmup_steps, total_steps))
