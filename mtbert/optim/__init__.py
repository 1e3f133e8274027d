"""The project's AdamW, the optimizer registry and learning-rate schedules."""

from __future__ import annotations

from typing import Callable, Iterable

import torch

from ..registry import Registry
from .adamw import AdamW
from .schedules import LR_SCHEDULES, make_lr_scheduler, register_lr_schedule

OPTIMIZERS: Registry[Callable[..., torch.optim.Optimizer]] = Registry("optimizer")
OPTIMIZERS.register("adamw")(AdamW)


@OPTIMIZERS.register("torch_adamw")
def torch_adamw(params: Iterable, **options) -> torch.optim.Optimizer:
    """torch's own AdamW (foreach kernels; fused on CUDA): one switch away from ours."""
    return torch.optim.AdamW(params, **options)


def make_optimizer(name: str, params: Iterable, **options) -> torch.optim.Optimizer:
    return OPTIMIZERS.get(name)(params, **options)


__all__ = ["AdamW", "LR_SCHEDULES", "OPTIMIZERS", "make_lr_scheduler", "make_optimizer", "register_lr_schedule"]
