"""Batch schedules: in what order the tasks' batches are visited within an epoch.

A schedule takes each task's list of batches for the epoch (already shuffled/bucketed) and returns
the epoch's plan, a list of (task, batch indices). The plan is a pure function of the batches and a
seeded generator, so a resumed run rebuilds the same plan and skips what it had done.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..registry import Registry

Plan = list[tuple[str, list[int]]]
ScheduleFn = Callable[[dict[str, list[list[int]]], torch.Generator], Plan]
BATCH_SCHEDULES: Registry[ScheduleFn] = Registry("batch schedule")
register_schedule = BATCH_SCHEDULES.register


@register_schedule("shuffled")
def shuffled(task_batches: dict[str, list[list[int]]], generator: torch.Generator) -> Plan:
    """All tasks' batches in one random order (report 002's best order); an epoch covers every task once."""
    plan = [(task, batch) for task, batches in task_batches.items() for batch in batches]
    order = torch.randperm(len(plan), generator=generator).tolist()
    return [plan[i] for i in order]


@register_schedule("sequential")
def sequential(task_batches: dict[str, list[list[int]]], generator: torch.Generator) -> Plan:
    """All batches of one task, then the next, in the configured task order (reports 000, 002)."""
    return [(task, batch) for task, batches in task_batches.items() for batch in batches]


get_schedule = BATCH_SCHEDULES.get
