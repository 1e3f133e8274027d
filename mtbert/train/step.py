"""One training step: forward each task batch of the step, its loss, then one update (the balanced
sum, or the surgically combined per-task gradients) or one update per task (``step_mode: separate``).
Under data-parallel training each rank runs its shard of every batch (see ``distributed``)."""

from __future__ import annotations

import contextlib
import logging
from typing import Callable, Optional, Sequence

import torch

from ..multitask import Batch, LossBalancer, MultitaskModel, Step, collate
from ..multitask.surgery import GradientSurgery
from ..precision import Precision
from .distributed import World

log = logging.getLogger("mtbert")
STEP_MODES = ("combined", "separate")


class StepRunner:
    def __init__(self, model: MultitaskModel, objectives: dict, penalties: list, balancer: LossBalancer,
                 surgery: Optional[GradientSurgery], step_mode: str, optimizer, lr_scheduler, scaler,
                 precision: Precision, max_grad_norm: float, features: Callable[[str], object], counters: dict,
                 after_update: Optional[Callable[[], None]] = None, world: World = World(),
                 data_parallel: Optional[torch.nn.Module] = None, seed: int = 0):
        if step_mode not in STEP_MODES:
            raise ValueError(f"train.step_mode must be one of {', '.join(STEP_MODES)}, not {step_mode!r}")
        if surgery is not None and step_mode == "separate":
            raise ValueError("gradient surgery combines the tasks of a step into one update; "
                             "it does not apply with train.step_mode: separate")
        self.model, self.objectives, self.penalties, self.balancer = model, objectives, penalties, balancer
        self.surgery, self.step_mode = surgery, step_mode
        self.optimizer, self.lr_scheduler, self.scaler = optimizer, lr_scheduler, scaler
        self.precision, self.max_grad_norm = precision, max_grad_norm
        self.features, self.counters, self.after_update = features, counters, after_update
        self.world, self.data_parallel = world, data_parallel  # DistributedDataParallel(TaskLoss) or None
        self.seed = seed
        self.nonfinite_streak = 0  # consecutive steps skipped for a non-finite loss (the trainer stops at a limit)

    # ----- pieces -------------------------------------------------------------------------
    def _batch(self, task: str, indices: list[int]) -> Batch:
        return collate(self.features(task), indices, self.model.tokenizer.pad_token_id).to(self.precision.device)

    def task_loss(self, task: str, indices: list[int], regularized: bool = True) -> tuple[torch.Tensor, Batch]:
        """The weighted loss of one task batch (without SMART's regulariser when not ``regularized``)."""
        batch = self._batch(task, indices)
        objective = self.objectives[task] if regularized else self.objectives[task].plain
        with self.precision.autocast():
            loss = objective(self.model, batch)
        return loss.float(), batch

    def _shard_loss(self, task: str, indices: list[int]) -> tuple[torch.Tensor, Batch, int]:
        """This rank's part of a training batch: (the loss carrying the batch's global mean value and
        this shard's gradient, the shard's batch, how many examples it counts for)."""
        if not self.world.distributed:
            loss, batch = self.task_loss(task, indices)
            return loss, batch, batch.size
        local = self.world.shard(indices)
        count = len(local)
        batch = self._batch(task, local or list(indices[:1]))
        with self.precision.autocast():
            loss = self.data_parallel(task, batch).float()
        return self.world.global_loss(loss, count, len(indices)), batch, count

    def _gradient_sync(self, enabled: bool):
        """DDP's all-reduce during backward, or none (surgery all-reduces per task instead)."""
        if self.data_parallel is None or enabled:
            return contextlib.nullcontext()
        return self.data_parallel.no_sync()

    def _penalty(self, tasks: Sequence[str]) -> Optional[torch.Tensor]:
        """The penalties of this update: every global one, and each task penalty whose task has a batch here."""
        terms = [weight * penalty(parameters) for weight, penalty, parameters, task in self.penalties
                 if task is None or task in tasks]
        return sum(terms) if terms else None

    def _backward(self, value: torch.Tensor, retain_graph: bool = False) -> None:
        (self.scaler.scale(value) if self.scaler else value).backward(retain_graph=retain_graph)

    def _update(self) -> None:
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        if self.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.lr_scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.after_update is not None:
            self.after_update()

    def _count(self, batch: Batch, examples: int) -> None:
        if examples == 0:  # a rank's empty shard, stood in for by a zero-weighted example
            return
        self.counters["examples"] += batch.size
        self.counters["real_tokens"] += batch.real_tokens
        self.counters["padded_tokens"] += batch.padded_tokens

    def _skip(self, step_number: int, tasks: list[str], losses: list[torch.Tensor]) -> float:
        if self.data_parallel is not None:
            # DDP waits for a backward after every synced forward; give it one whose gradients are
            # discarded below (every rank skips: the loss value is the global one, non-finite everywhere)
            self._backward(sum(torch.nan_to_num(loss) for loss in losses) * 0.0)
        self.counters["skipped_nonfinite"] += 1
        self.nonfinite_streak += 1
        log.warning("step %d: non-finite loss on %s, update skipped (%d so far)", step_number, ", ".join(tasks),
                    self.counters["skipped_nonfinite"])
        self.optimizer.zero_grad(set_to_none=True)
        return float("nan")

    # ----- a step -------------------------------------------------------------------------
    def run(self, step: Step, step_number: int) -> float:
        """Train on one plan step; returns the sum of its tasks' losses (NaN when skipped)."""
        self.model.train()
        self.balancer.train()
        if self.step_mode == "separate":
            return self._run_separate(step, step_number)
        shared = self.model.shared_parameters() if self.surgery is not None else []  # per step: a selection may freeze some
        surgery = self.surgery is not None and len(step) >= 2 and bool(shared)  # else nothing to combine
        losses, examples, batches = {}, {}, []
        with self._gradient_sync(not surgery):
            for task, indices in step:
                losses[task], batch, counted = self._shard_loss(task, indices)
                examples[task] = len(indices)
                batches.append((batch, counted))
            bad = [task for task, loss in losses.items() if not torch.isfinite(loss)]
            if bad:
                return self._skip(step_number, bad, list(losses.values()))
            terms = self.balancer.terms(losses, examples)
            penalty = self._penalty(list(losses))
            if not surgery:
                total = sum(terms.values())
                self._backward(total + penalty if penalty is not None else total)
            else:
                self._surgery_backward(self.balancer.by_task(terms), shared, step_number)
                if penalty is not None:
                    self._backward(penalty)
                shared_ids = {id(p) for p in shared}
                self.world.average_gradients([p for p in self.model.parameters() if id(p) not in shared_ids])
        self._update()
        self.nonfinite_streak = 0
        for batch, counted in batches:
            self._count(batch, counted)
        return float(sum(loss.detach() for loss in losses.values()))

    def _run_separate(self, step: Step, step_number: int) -> float:
        """One optimizer step per task batch of the step (report 004), each with its own LR-schedule step."""
        total = 0.0
        for task, indices in step:
            loss, batch, counted = self._shard_loss(task, indices)
            if not torch.isfinite(loss):
                self._skip(step_number, [task], [loss])
                total = float("nan")
                continue
            term = sum(self.balancer.terms({task: loss}, {task: len(indices)}).values())
            penalty = self._penalty([task])
            self._backward(term + penalty if penalty is not None else term)
            self._update()
            self.nonfinite_streak = 0
            self._count(batch, counted)
            total += float(loss.detach())
        return total

    def _surgery_backward(self, terms: dict[str, torch.Tensor], shared: list[torch.nn.Parameter],
                          step_number: int) -> None:
        """Each task's gradient of the shared parameters from its own backward, combined by the surgery;
        the heads (and learned balancer weights) accumulate their plain gradients meanwhile. The
        surgery's random choices (PCGrad's task order) come from a generator seeded by the step, so
        every data-parallel rank makes the same ones and a resumed run repeats them."""
        rows = []
        names = list(terms)
        for i, task in enumerate(names):
            self._backward(terms[task], retain_graph=i < len(names) - 1)  # balancer weights share a graph
            rows.append(self.world.average(torch.cat([
                (p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float() for p in shared])))
            for p in shared:
                p.grad = None
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + step_number)
        combined = self.surgery(torch.stack(rows), generator)
        offset = 0
        for p in shared:
            p.grad = combined[offset: offset + p.numel()].view_as(p).to(p.dtype)
            offset += p.numel()


def optimizer_steps(plan_steps: list[Step], step_mode: str) -> int:
    """Optimizer updates a list of plan steps makes: one per step, or one per task batch when separate."""
    return sum(len(step) for step in plan_steps) if step_mode == "separate" else len(plan_steps)
