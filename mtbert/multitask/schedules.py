"""Batch schedules: which tasks' batches make up each training step, in what order, and how long an
epoch is.

A schedule is asked two things per epoch: each task's batch size (``batch_sizes``; most schedules use
the configured one for every task) and, given each task's batches for the epoch (already shuffled and
length-bucketed), the epoch's plan: a list of steps, each step a list of (task, example indices).
A step with several tasks is combined into one update by the loss balancer (or split into one
optimizer step per task with ``train.step_mode: separate``). The plan is a pure function of the
batches and a seeded generator, so a resumed run rebuilds the same plan and skips what it had done.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from ..registry import Registry

Step = list[tuple[str, list[int]]]
Plan = list[Step]
TaskBatches = dict[str, list[list[int]]]
BATCH_SCHEDULES: Registry[type["BatchSchedule"]] = Registry("batch schedule")
register_schedule = BATCH_SCHEDULES.register


class BatchSchedule:
    """Base class: every task at the configured batch size; subclasses implement ``plan``."""

    registry_name = ""
    one_task_per_step = False  # every step holds a single task's batch (so step_mode cannot matter)

    def batch_sizes(self, sizes: dict[str, int], batch_size: int) -> dict[str, int]:
        return {task: batch_size for task in sizes}

    def plan(self, task_batches: TaskBatches, generator: torch.Generator) -> Plan:
        raise NotImplementedError

    def for_epoch(self, epoch: int, epochs: int) -> "BatchSchedule":
        """The schedule epoch ``epoch`` (0-based) of ``epochs`` uses: itself, unless it changes over training."""
        return self


def _cycle(batches: list[list[int]], count: int, generator: torch.Generator) -> list[list[int]]:
    """``count`` batches: the task's batches in order, then again in fresh random orders as needed."""
    out = list(batches[:count])
    while len(out) < count:
        order = torch.randperm(len(batches), generator=generator).tolist()
        out.extend(batches[i] for i in order[: count - len(out)])
    return out


def _round_robin(task_batches: TaskBatches, rounds: int) -> Plan:
    """``rounds`` steps, each one batch of every task in the configured order (a task that has run out
    sits the round out): report 004's training iteration, one update for the summed losses
    (``step_mode: combined``) or one per task in turn (``separate``)."""
    return [[(task, batches[r]) for task, batches in task_batches.items() if r < len(batches)] for r in range(rounds)]


@register_schedule("shuffled")
class Shuffled(BatchSchedule):
    """All tasks' batches in one random order, one task per step (report 002's best order).
    Epoch: every example of every task once."""

    one_task_per_step = True

    def plan(self, task_batches: TaskBatches, generator: torch.Generator) -> Plan:
        steps = [[(task, batch)] for task, batches in task_batches.items() for batch in batches]
        return [steps[i] for i in torch.randperm(len(steps), generator=generator).tolist()]


@register_schedule("sequential")
class Sequential(BatchSchedule):
    """All batches of one task, then the next, in the configured task order (reports 000, 002).
    Epoch: every example of every task once."""

    one_task_per_step = True

    def plan(self, task_batches: TaskBatches, generator: torch.Generator) -> Plan:
        return [[(task, batch)] for task, batches in task_batches.items() for batch in batches]


@register_schedule("zipped")
class Zipped(BatchSchedule):
    """One batch of every task per step, combined into one update, stopping when the smallest task runs
    out (report 000's zip). Epoch: (batches of the smallest task) steps; larger tasks see a prefix of a
    fresh shuffle each epoch."""

    def plan(self, task_batches: TaskBatches, generator: torch.Generator) -> Plan:
        rounds = min(len(b) for b in task_batches.values())
        return [[(task, batches[r]) for task, batches in task_batches.items()] for r in range(rounds)]


@register_schedule("cycled")
class Cycled(BatchSchedule):
    """One batch of every task per step, running to the largest task and repeating the smaller ones in
    fresh orders (report 000's cycle). Epoch: (batches of the largest task) steps."""

    def plan(self, task_batches: TaskBatches, generator: torch.Generator) -> Plan:
        rounds = max(len(b) for b in task_batches.values())
        cycled = {task: _cycle(batches, rounds, generator) for task, batches in task_batches.items()}
        return [[(task, cycled[task][r]) for task in cycled] for r in range(rounds)]


@register_schedule("round_robin")
class RoundRobin(BatchSchedule):
    """One batch of every task per step, the same number of batches for every task (report 004's
    "rrobin"). Epoch: (batches of the smallest task) steps."""

    def plan(self, task_batches: TaskBatches, generator: torch.Generator) -> Plan:
        return _round_robin(task_batches, min(len(b) for b in task_batches.values()))


@register_schedule("interleaved")
class Interleaved(BatchSchedule):
    """Round-robin with per-task batch sizes chosen so that every task has as many batches as the
    largest one has at the configured size; one epoch then covers every example of every task once
    (report 004's "rrobin-full": all of Quora, smaller SST and STS batches). Epoch: (batches of the
    largest task) steps, each one batch of every task."""

    def batch_sizes(self, sizes: dict[str, int], batch_size: int) -> dict[str, int]:
        rounds = max(math.ceil(n / batch_size) for n in sizes.values())
        return {task: max(1, math.ceil(n / rounds)) for task, n in sizes.items()}

    def plan(self, task_batches: TaskBatches, generator: torch.Generator) -> Plan:
        return _round_robin(task_batches, max(len(b) for b in task_batches.values()))


@register_schedule("proportional")
class Proportional(BatchSchedule):
    """Each step's task drawn at random with probability ∝ n_t^(1/T) (T = ``temperature``; 1 gives
    proportional sampling, large T uniform; as jiant offers), or with fixed ``shares`` per task (e.g.
    ``{sst: 0.3, quora: 0.54, sts: 0.16}``, normalised; MT-DNN-style mixture weights) when a time budget
    should go to the task that needs the steps. A task's batches are used in order and reshuffled when
    used up. Epoch: as many steps as all tasks have batches."""

    one_task_per_step = True

    def __init__(self, temperature: float = 1.0, shares: dict[str, float] | None = None):
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, not {temperature}")
        if shares is not None and (not shares or any(not isinstance(v, (int, float)) or v < 0 for v in shares.values())
                                   or sum(shares.values()) <= 0):
            raise ValueError(f"shares must map tasks to non-negative numbers with a positive sum, not {shares!r}")
        self.temperature = temperature
        self.shares = shares

    def probabilities(self, task_batches: TaskBatches) -> dict[str, float]:
        if self.shares is not None:
            unknown = sorted(set(self.shares) - set(task_batches))
            missing = sorted(set(task_batches) - set(self.shares))
            if unknown or missing:
                raise ValueError(f"schedule shares must name exactly the trained tasks {sorted(task_batches)}"
                                 f" (unknown: {unknown}, missing: {missing})")
            weights = {task: float(self.shares[task]) for task in task_batches}
        else:
            weights = {task: sum(len(b) for b in batches) ** (1.0 / self.temperature)
                       for task, batches in task_batches.items()}
        total = sum(weights.values())
        return {task: w / total for task, w in weights.items()}

    def plan(self, task_batches: TaskBatches, generator: torch.Generator) -> Plan:
        tasks = list(task_batches)
        probabilities = self.probabilities(task_batches)
        steps = sum(len(b) for b in task_batches.values())
        draws = torch.multinomial(torch.tensor([probabilities[t] for t in tasks], dtype=torch.float64), steps,
                                  replacement=True, generator=generator).tolist()
        needed = {task: draws.count(i) for i, task in enumerate(tasks)}
        streams = {task: iter(_cycle(task_batches[task], needed[task], generator)) for task in tasks}
        return [[(tasks[i], next(streams[tasks[i]]))] for i in draws]


@register_schedule("temperature")
class Temperature(Proportional):
    """Proportional sampling flattened by a temperature (default T = 2: p ∝ √n)."""

    def __init__(self, temperature: float = 2.0):
        super().__init__(temperature)


@register_schedule("annealed")
class Annealed(Proportional):
    """Annealed sampling (Stickland & Murray 2019): each step's task drawn with p ∝ n_t^α, where α falls
    from 1 (proportional) in the first epoch to 1 − ``decay`` (flatter) in the last: α = 1 − decay·e/(E − 1)
    in epoch e = 0 … E − 1 (decay 0.8, as the paper). Large tasks lead early; small ones catch up late.
    Epoch: as many steps as all tasks have batches."""

    def __init__(self, decay: float = 0.8):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), not {decay}")
        super().__init__(1.0)
        self.decay = decay

    def alpha(self, epoch: int, epochs: int) -> float:
        return 1.0 - self.decay * epoch / (epochs - 1) if epochs > 1 else 1.0

    def for_epoch(self, epoch: int, epochs: int) -> "Proportional":
        return Proportional(temperature=1.0 / self.alpha(epoch, epochs))


@register_schedule("mixed")
class Mixed(BatchSchedule):
    """Every step holds examples of every task, in proportion to the tasks' sizes (about ``batch_size``
    in all), combined into one update (report 003, which averages each task's loss over its examples,
    then the tasks: ``train.balancer: mean``; ``examples`` weighs the tasks by their share of the step). Epoch: every example of every task once (smaller tasks' last
    batches are cycled when rounding leaves them a batch short)."""

    def batch_sizes(self, sizes: dict[str, int], batch_size: int) -> dict[str, int]:
        total = sum(sizes.values())
        return {task: max(1, round(batch_size * n / total)) for task, n in sizes.items()}

    def plan(self, task_batches: TaskBatches, generator: torch.Generator) -> Plan:
        rounds = max(len(b) for b in task_batches.values())
        cycled = {task: _cycle(batches, rounds, generator) for task, batches in task_batches.items()}
        return [[(task, cycled[task][r]) for task in cycled] for r in range(rounds)]


@register_schedule("random_mixed")
class RandomMixed(BatchSchedule):
    """Every step ``batch_size`` examples drawn at random from all tasks' examples together, so each
    task's share of a step varies from step to step (report 003's mixed batches; ``mixed`` fixes each
    task's share instead), combined into one update. Epoch: every example of every task once; the
    length bucketing of the task batches does not survive the mixing."""

    batch_size = 0

    def batch_sizes(self, sizes: dict[str, int], batch_size: int) -> dict[str, int]:
        self.batch_size = batch_size  # the plan splits the mixed examples at this size
        return {task: batch_size for task in sizes}

    def plan(self, task_batches: TaskBatches, generator: torch.Generator) -> Plan:
        examples = [(task, index) for task, batches in task_batches.items() for batch in batches for index in batch]
        order = torch.randperm(len(examples), generator=generator).tolist()
        size = self.batch_size or max((len(b) for batches in task_batches.values() for b in batches), default=1)
        plan = []
        for start in range(0, len(order), size):
            step: dict[str, list[int]] = {}
            for i in order[start: start + size]:
                task, index = examples[i]
                step.setdefault(task, []).append(index)
            plan.append([(task, step[task]) for task in task_batches if task in step])
        return plan


def build_schedule(name: str, options: dict | None = None) -> BatchSchedule:
    schedule_class = BATCH_SCHEDULES.get(name)
    try:
        return schedule_class(**(options or {}))
    except TypeError as error:
        raise ValueError(f"batch schedule {name!r}: bad train.schedule_options {options!r} ({error})") from None


def plan_counts(plan: Plan, tasks: Sequence[str]) -> dict[str, int]:
    """Examples per task in a plan: what an epoch of this schedule covers."""
    counts = {task: 0 for task in tasks}
    for step in plan:
        for task, indices in step:
            counts[task] += len(indices)
    return counts
