"""The project's AdamW, the optimizer registry and learning-rate schedules."""

from __future__ import annotations

from typing import Callable, Iterable

import torch

from .adamw import AdamW
from .schedules import LR_SCHEDULES, make_lr_scheduler, register_lr_schedule

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adamw": AdamW,
    # torch's fused kernel: one switch away, for users who want the last few milliseconds per step.
    "torch_adamw": lambda params, **kw: torch.optim.AdamW(params, foreach=True, **kw),
}


def make_optimizer(name: str, params: Iterable, **options) -> torch.optim.Optimizer:
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(sorted(OPTIMIZERS))}")
    return OPTIMIZERS[name](params, **options)


__all__ = ["AdamW", "LR_SCHEDULES", "OPTIMIZERS", "make_lr_scheduler", "make_optimizer", "register_lr_schedule"]
