"""Running a parameter selection inside a run: the gradient pass over the training data (SAM: each
task's batches, or the first epoch's own training steps), the masks saved with the run, and on
``--resume`` the saved masks instead of a new pass."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch

from ..multitask import MultitaskModel, Plan, bucketed_batches
from ..peft import (SELECTION_FILE, ParameterSelection, apply_masks, load_selection, save_selection,
                    selected_count)
from .distributed import World
from .step import StepRunner

log = logging.getLogger("mtbert")


def gradient_pass(runner: StepRunner, model: MultitaskModel, tasks: list[str], batch_size: int, seed: int):
    """Losses of the training data, batch by batch (dropout off), for SAM's accumulation of squared
    gradients; at most ``limit`` batches per task. Batches are length-bucketed in a seeded random order,
    so a limited pass is a random sample, not the shortest sentences."""

    def losses(limit: Optional[int]) -> Iterator[torch.Tensor]:
        was_training = model.training
        model.eval()
        try:
            for task in tasks:
                features = runner.features(task)
                batches = bucketed_batches(features.lengths, batch_size, torch.Generator().manual_seed(seed), 50)
                for indices in batches[:limit] if limit is not None else batches:
                    loss, _ = runner.task_loss(task, indices, regularized=False)
                    yield loss
        finally:
            model.train(was_training)

    return losses


def training_pass(runner: StepRunner, model: MultitaskModel, first_epoch: Callable[[], Plan]):
    """Losses of the first epoch's own steps, each the step's balanced multitask loss (the run's schedule
    and balancer) with dropout on as in training, for SAM's gradient (report 003's first epoch: the
    gradients of its unified loss over mixed batches, without optimising); at most ``limit`` steps."""

    def losses(limit: Optional[int]) -> Iterator[torch.Tensor]:
        was_training = model.training
        model.train()
        try:
            steps = first_epoch()
            for step in steps[:limit] if limit is not None else steps:
                task_losses = {task: runner.task_loss(task, indices, regularized=False)[0] for task, indices in step}
                examples = {task: len(indices) for task, indices in step}
                yield sum(runner.balancer.terms(task_losses, examples).values())
        finally:
            model.train(was_training)

    return losses


def select_parameters(selection: ParameterSelection, name: str, model: MultitaskModel, runner: StepRunner,
                      optimizer, tasks: list[str], batch_size: int, seed: int, run_dir: Path, resume: bool,
                      world: World = World(), first_epoch: Optional[Callable[[], Plan]] = None) -> dict:
    """Choose (or, resuming, reload) the trainable encoder entries and restrict training to them.
    Returns what to report: how many weights were candidates and selected, and the pass's seconds.
    Under data-parallel training every rank runs the (dropout-free) pass over the whole training data
    and rank 0's masks are broadcast, so all ranks train exactly the same entries."""
    candidates = {n: p for n, p in model.encoder.named_parameters() if p.requires_grad}
    if not candidates:
        raise ValueError("model.selection: no encoder weights are trainable to select from (model.freeze?)")
    path = run_dir / SELECTION_FILE
    started = time.perf_counter()
    if resume and path.exists():
        masks = load_selection(path, candidates)
    else:
        if getattr(selection, "gradient_pass", "tasks") == "training":
            if first_epoch is None:
                raise ValueError(f"model.selection {name!r}: gradient_pass training needs the run's first epoch")
            losses = training_pass(runner, model, first_epoch)
        else:
            losses = gradient_pass(runner, model, tasks, batch_size, seed)
        masks = selection.select(candidates, losses)
        world.broadcast([masks[n] for n in sorted(masks)])
        if world.is_main:
            save_selection(path, masks, name)
    seconds = time.perf_counter() - started
    apply_masks(candidates, masks, optimizer)
    model.selection = masks
    total = sum(p.numel() for p in candidates.values())
    chosen = selected_count(masks)
    log.info("parameter selection %s: %d of %d encoder weights (%.2f%%) train; %.1f s", name, chosen, total,
             100 * chosen / total, seconds)
    return {"method": name, "candidates": total, "selected": chosen, "seconds": round(seconds, 2)}
