"""One pass over a whole experiment config before any work: every numeric field within its range and
finite, every tuple the right length, every choice among its options, the device well formed.

Why one pass at load time: a value such as ``train.epochs: 0`` or ``train.max_grad_norm: -1`` used to run
to exit 0 with an untrained or wrecked model; ``train.lr: .nan`` trained a model full of NaN. Every
problem is named with its field and the range it must lie in, all of them at once.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Optional

Check = Callable[[Any], Optional[str]]  # None when the value is fine, else what it must be
DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def at_least(low: float, integer: bool = False, optional: bool = False) -> Check:
    def check(value):
        if value is None and optional:
            return None
        if not _number(value) or not math.isfinite(value) or value < low or (integer and value != int(value)):
            kind = "a whole number" if integer else "a finite number"
            return f"must be {kind} >= {low:g}{' or null' if optional else ''}"
        return None
    return check


def above(low: float) -> Check:
    def check(value):
        if not _number(value) or not math.isfinite(value) or value <= low:
            return f"must be a finite number > {low:g}"
        return None
    return check


def within(low: float, high: float, high_open: bool = False) -> Check:
    def check(value):
        if not _number(value) or not math.isfinite(value) or value < low or value > high or (high_open and value == high):
            return f"must be in [{low:g}, {high:g}{')' if high_open else ']'}"
        return None
    return check


def one_of(*choices: str) -> Check:
    def check(value):
        return None if value in choices else f"must be one of {', '.join(choices)}"
    return check


def device(value: Any) -> Optional[str]:
    return None if isinstance(value, str) and DEVICE.match(value) else "must be auto, cpu, mps, cuda or cuda:N"


# TrainConfig checks its batch sizes, eval_every, eval_max_tokens and keep_checkpoint itself, as it is
# built; the rules here cover everything else.
RULES: dict[str, Check] = {
    "model.max_length": at_least(8, integer=True),
    "data.limit": at_least(1, integer=True, optional=True),
    "data.eval_limit": at_least(1, integer=True, optional=True),
    "data.shrink": at_least(1, integer=True),
    "train.epochs": at_least(1, integer=True),
    "train.lr": above(0),
    "train.weight_decay": at_least(0),
    "train.eps": above(0),
    "train.warmup_ratio": within(0, 1),
    "train.max_grad_norm": at_least(0),
    "train.max_steps": at_least(1, integer=True, optional=True),
    "train.max_nonfinite_steps": at_least(1, integer=True),
    "train.pretrain_epochs": at_least(0, integer=True),
    "train.bucket_batches": at_least(1, integer=True),
    "train.precision": one_of("auto", "bf16", "fp16", "fp32"),
    "train.device": device,
    "train.num_threads": at_least(1, integer=True, optional=True),
    "train.checkpoint_every": at_least(0, integer=True),
    "train.log_every": at_least(0, integer=True),
    "train.seed": at_least(0, integer=True),
    "model.init_seed": at_least(0, integer=True, optional=True),
    "train.smart.weight": at_least(0),
    "train.smart.epsilon": above(0),
    "train.smart.sigma": at_least(0),
    "train.smart.step_size": above(0),
    "train.smart.steps": at_least(1, integer=True),
    "train.smart.proximal_weight": at_least(0),
    "train.smart.beta": within(0, 1, high_open=True),
    "train.smart.beta_late": within(0, 1, high_open=True),
    "train.smart.beta_warmup": within(0, 1),
    "train.distill.gold_weight": within(0, 1),
    "train.distill.temperature": above(0),
    "train.layer_lr_decay": within(0, 1),
}
EACH_RULES: dict[str, Check] = {  # every value of a mapping or list
    "train.betas": within(0, 1, high_open=True),
    "train.task_weights": at_least(0),
    "train.penalties": at_least(0),
    "train.smart.task_weights": at_least(0),
}


def _get(values: dict, dotted: str) -> Any:
    node: Any = values
    for key in dotted.split("."):
        node = node[key]
    return node


def config_problems(values: dict) -> list[str]:
    """Every out-of-range field of a config (as ``ExperimentConfig.to_dict()`` gives it)."""
    problems = []
    for dotted, check in RULES.items():
        value = _get(values, dotted)
        problem = check(value)
        if problem:
            problems.append(f"{dotted}: {problem}, got {value!r}")
    for dotted, check in EACH_RULES.items():
        collection = _get(values, dotted)
        items = collection.items() if isinstance(collection, dict) else enumerate(collection)
        for key, value in items:
            problem = check(value)
            if problem:
                problems.append(f"{dotted}.{key}: {problem}, got {value!r}")
    for task, head in (values.get("model", {}).get("heads") or {}).items():
        problem = within(0, 1, high_open=True)(head.get("dropout"))
        if problem:
            problems.append(f"model.heads.{task}.dropout: {problem}, got {head.get('dropout')!r}")
    return problems
