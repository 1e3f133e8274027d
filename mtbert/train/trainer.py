"""The training loop: schedule → batch → forward/loss → step, with evaluation, the best model,
resumable checkpoints and prediction files.

Run directory layout (what scripts may rely on):
    config.yaml      the resolved config
    metrics.jsonl    one JSON object per evaluation (split "dev": step, epoch, <task>_<metric>, composite,
                     train_loss, lr) and every train.log_every steps (split "train": step, epoch, loss,
                     mean_loss, lr)
    tensorboard/     the same numbers plus throughput, when the tensorboard package is installed
    analysis/        <task>-dev.jsonl: the best model's dev predictions with texts, gold and raw outputs
    checkpoint.pt    the resumable state (atomic)
    parameters.json  stored and tunable parameters per task (after any parameter selection)
    selection.safetensors  the parameter selection's masks, when there is one
    best/            the best model by dev composite (loadable by MultitaskModel.from_pretrained)
    predictions/     leaderboard files for dev and test of every task
    results.json     best metrics, timing and throughput
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from tqdm.auto import tqdm

from ..config import ConfigError, ExperimentConfig, describe_data_dirs
from ..evaluate import (TaskPredictions, analysis_file, evaluate_split, predict_features, prediction_file_name,
                        write_analysis, write_predictions)
from ..multitask import (MultitaskModel, Plan, TaskFeatures, build_balancer, build_schedule, build_surgery,
                         bucketed_batches, plan_counts, random_batches)
from .builder import build_augmentations, build_model, build_training_parts
from ..precision import resolve_device, resolve_precision
from .distributed import current_world, init_world, threads_per_process, wrap_for_data_parallel
from .data import TaskSplits, labelled_split, load_augmentation_splits, load_task_splits
from .interrupt import StopRequest
from ..peft import build_selection, format_accounting, parameter_accounting
from ..peft.delta import DELTA_FILE
from .selection import select_parameters
from .smart import Smart
from .step import StepRunner, optimizer_steps
from .run_log import RunLog, read_metrics
from .state import STATE_FILE, atomic_torch_save, load_training_state, restore_rng_states, rng_states
from .lock import run_directory_lock
from ..bert import CheckpointError
from ..errors import TrainingDiverged

log = logging.getLogger("mtbert")
Callback = Callable[["Trainer"], None]
PAIR_ORDER_SEED = 7_919_000_000  # keeps the pair-order draws apart from the plan's generator
COUNTED = ("examples", "real_tokens", "padded_tokens")  # per rank; summed over ranks when reported
# Config fields a resumed run may change: where things are and how the run reports, not what it trains.
RESUMABLE_CHANGES = ("output_dir", "data.dir", "train.progress", "train.num_threads", "train.tensorboard",
                     "train.device", "train.log_every", "train.checkpoint_every", "train.keep_checkpoint",
                     "train.max_nonfinite_steps", "train.eval_batch_size", "train.eval_max_tokens")


class Trainer:
    """``callbacks`` run after every step; ``eval_callbacks`` after every dev evaluation, with its record
    (a search prunes trials there by raising)."""

    def __init__(self, config: ExperimentConfig, run_dir: Path, callbacks: Sequence[Callback] = (),
                 eval_callbacks: Sequence[Callable[["Trainer", dict], None]] = (), data_dir: Optional[str] = None,
                 trust_checkpoint: bool = False):
        """``data_dir``: a directory that beats ``$MTBERT_DATA_DIR`` and the config's (``--data-dir``);
        ``trust_checkpoint``: resume from a checkpoint that has no checksum beside it (``--trust-checkpoint``)."""
        self.trust_checkpoint = trust_checkpoint
        self.config = config
        self.run_dir = Path(run_dir)
        self.callbacks = list(callbacks)
        self.eval_callbacks = list(eval_callbacks)
        train = config.train
        self.device = resolve_device(train.device, local_rank=current_world().local_rank)
        self.world = init_world(self.device)
        self.run_log = RunLog(self.run_dir, config.train.tensorboard, active=self.world.is_main)
        if train.num_threads or self.world.distributed:
            torch.set_num_threads(train.num_threads or threads_per_process(self.world))
        self.precision = resolve_precision(train.precision, self.device)
        self.bars: Optional[bool] = None if train.progress and self.world.is_main else False  # None: on a terminal
        flag, data_dir = data_dir, config.resolved_data_dir(data_dir)
        if not data_dir.is_dir():
            raise ConfigError(f"data directory {data_dir} {'is not a directory' if data_dir.exists() else 'not found'}"
                              f" (places, first set wins: {describe_data_dirs(flag, config.data.dir, environment=False)})")
        config.data.dir = str(data_dir)  # the run records where its data was; evaluate and predict use it
        init_seed = config.model.init_seed
        torch.manual_seed(train.seed if init_seed is None else init_seed)
        self.model: MultitaskModel = build_model(config).to(self.device)
        if init_seed is not None:
            torch.manual_seed(train.seed)  # dropout and everything after the heads' draw follow the run's seed
        if train.compile:
            self.model.encoder.compile(dynamic=True)  # in place: parameter names (and checkpoints) unchanged
        self.model.data_dir = str(data_dir)
        self.data: dict[str, TaskSplits] = load_task_splits(self.model, data_dir, config.data.limit,
                                                            shrink=config.data.shrink, seed=train.seed,
                                                            tasks=config.data.tasks, eval_limit=config.data.eval_limit)
        augmentations = build_augmentations(config)
        self.data.update(load_augmentation_splits(self.model, augmentations, data_dir, config.data.limit,
                                                  config.data.shrink, train.seed))
        trainable_heads = config.model.trainable_heads
        self.train_tasks = [t for t in self.data if not trainable_heads or t in trainable_heads]
        missing = [t for t in self.train_tasks if self.data[t].get("train") is None or len(self.data[t].get("train")) == 0]
        if missing:
            raise ValueError(f"no training examples for task(s) {', '.join(missing)}")
        if train.pretrain_epochs and train.pretrain_task not in self.data:
            raise ValueError(f"train.pretrain_task {train.pretrain_task!r} is not one of data.tasks "
                             f"({', '.join(self.data)})")
        self.schedule = build_schedule(train.schedule, train.schedule_options)
        if train.step_mode == "separate" and self.schedule.one_task_per_step:
            raise ValueError(f"train.step_mode: separate has no effect with train.schedule: {train.schedule}, whose "
                             "steps hold one task each (every update is already one task's); use a schedule whose "
                             "steps hold several tasks (zipped, cycled, round_robin, interleaved, mixed)")
        kinds = {task: spec.kind for task, spec in self.model.specs.items()}
        kinds.update({a.name: a.kind for a in augmentations})
        self.balancer = build_balancer(train.balancer, kinds, {a.name: a.head_task for a in augmentations}).to(self.device)
        self.total_epochs = train.pretrain_epochs + train.epochs
        plans = [step for e in range(self.total_epochs) for step in self.epoch_plan(e)]
        if train.max_steps is not None:
            plans = plans[: train.max_steps]
        self.total_steps = len(plans)
        updates = optimizer_steps(plans, train.step_mode)
        self.scaler = self.precision.grad_scaler()
        self.counters = {"examples": 0, "real_tokens": 0, "padded_tokens": 0, "train_seconds": 0.0,
                         "skipped_nonfinite": 0}
        self.epoch_swaps: dict[str, list[bool]] = {}  # this epoch's pair-order flags per task (see orient_pairs)
        parts = build_training_parts(config, self.model, self.data, augmentations, self.train_tasks, self.balancer,
                                     updates, self.counters, self.run_dir, self.precision, self.epoch_swaps.get,
                                     data_dir, self.world.is_main)
        self.objectives, self.penalties = parts.objectives, parts.penalties
        self.optimizer, self.lr_scheduler = parts.optimizer, parts.lr_scheduler
        self.smart: Optional[Smart] = parts.smart
        self.average, self.distillation = parts.average, parts.distillation
        self.selection = build_selection(config.model.selection, config.model.selection_options) \
            if config.model.selection else None
        self.selection_report: dict = {}
        self.stop = StopRequest()
        self.step = 0
        self.epoch = 0
        self.position = 0
        self.best_score = -math.inf
        self.epoch_train: dict[str, TaskFeatures] = {}  # this epoch's training pairs in their drawn order
        self.best_dev: dict[str, TaskPredictions] = {}  # the best evaluation's outputs, reused for its dev files
        self.epoch_loss = [0.0, 0]  # sum and count of finite losses this epoch, saved so resume logs the same
        if self.world.distributed:
            torch.manual_seed(train.seed + 1_000_003 * self.world.rank)  # own dropout masks per rank
        self.runner = StepRunner(
            self.model, self.objectives, self.penalties, self.balancer,
            build_surgery(train.surgery, train.surgery_options), train.step_mode, self.optimizer,
            self.lr_scheduler, self.scaler, self.precision, train.max_grad_norm,
            self.train_features, self.counters,
            after_update=self.after_update if self.smart is not None or self.average is not None else None,
            world=self.world, seed=train.seed)

    # ----- the epoch plan -----------------------------------------------------------------
    def epoch_plan(self, epoch: int) -> Plan:
        """The epoch's steps: a pure function of seed and epoch, so resume can rebuild it. Epochs before
        ``train.pretrain_epochs`` train the pre-training task alone."""
        train = self.config.train
        generator = torch.Generator().manual_seed(train.seed * 100_003 + epoch)
        tasks = [train.pretrain_task] if epoch < train.pretrain_epochs else self.train_tasks
        sizes = {task: len(self.data[task].get("train")) for task in tasks}
        schedule = self.schedule.for_epoch(max(0, epoch - train.pretrain_epochs), train.epochs)
        batch_sizes = schedule.batch_sizes(sizes, train.batch_size)
        task_batches = {}
        for task in tasks:
            features = self.data[task].get("train")
            if train.bucket_by_length:
                task_batches[task] = bucketed_batches(features.lengths, batch_sizes[task], generator,
                                                      train.bucket_batches)
            else:
                task_batches[task] = random_batches(len(features), batch_sizes[task], generator)
        return schedule.plan(task_batches, generator)

    def orient_pairs(self, epoch: int) -> None:
        """Draw the epoch's order of every training pair of the tasks whose pair order is not fixed: a
        pure function of seed and epoch, like the plan, so a resumed epoch sees the same pairs."""
        generator = torch.Generator().manual_seed(PAIR_ORDER_SEED + self.config.train.seed * 100_003 + epoch)
        self.epoch_train = {}
        self.epoch_swaps.clear()
        for task in self.train_tasks:
            if self.model.pair_orders.get(task, "fixed") != "fixed":
                features = self.data[task].get("train")
                swap = (torch.rand(len(features), generator=generator) < 0.5).tolist()
                self.epoch_train[task] = features.oriented(swap)
                self.epoch_swaps[task] = swap

    def train_features(self, task: str) -> TaskFeatures:
        """A task's training features as this epoch shows them."""
        features = self.epoch_train.get(task)
        return features if features is not None else self.data[task].get("train")

    def after_update(self) -> None:
        """What follows every optimizer update: SMART's teacher and the weight average move."""
        if self.smart is not None:
            self.smart.after_update(self.model)
        if self.average is not None:
            self.average.update()

    def averaged(self):
        """The weights that are evaluated and saved: the average while it is applied, else the trained ones."""
        return self.average.applied() if self.average is not None else contextlib.nullcontext()

    def train_step(self, step) -> float:
        """One plan step (one or more task batches); returns the sum of its tasks' losses."""
        return self.runner.run(step, self.step)

    # ----- checkpoints --------------------------------------------------------------------
    def counted_totals(self) -> dict[str, int]:
        """Examples and tokens seen, summed over the ranks (a collective: every rank calls it)."""
        return {k: int(v) for k, v in self.world.sum({k: self.counters[k] for k in COUNTED}).items()}

    def save_state(self) -> None:
        """Every rank calls this (it gathers their random states); rank 0 writes the file."""
        rng, rank_rng = rng_states(), self.world.rank_rng_states()
        counters = {**self.counters, **self.counted_totals()}
        if not self.world.is_main:
            return
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.lr_scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else {},
            "balancer": self.balancer.state_dict(),
            "smart": self.smart.state_dict() if self.smart is not None else {},
            "averaging": self.average.state_dict() if self.average is not None else {},
            "step": self.step, "epoch": self.epoch, "position": self.position,
            "best_score": self.best_score, "metric_lines": self.run_log.lines, "epoch_loss": list(self.epoch_loss),
            "counters": counters, "rng": rng,
            "world_size": self.world.size, "rank_rng": rank_rng,
            "config": self.config.to_dict(),
        }
        atomic_torch_save(state, self.run_dir / STATE_FILE)

    def restore_state(self) -> None:
        state = load_training_state(self.run_dir, self.trust_checkpoint)
        path = self.run_dir / STATE_FILE
        check_position(state, path, self.total_steps, self.total_epochs)
        if "config" in state:
            changed = config_differences(state["config"], self.config.to_dict())
            if changed:
                raise CheckpointError(f"{path} was written by a run with other settings: {'; '.join(changed[:8])}"
                                      f"{' ...' if len(changed) > 8 else ''}. Resume with the config it was written "
                                      "with, or start a new run (--overwrite, or another --output-dir)")
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        except (RuntimeError, ValueError, KeyError) as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise CheckpointError(f"{path} does not fit this run's model and optimizer ({first}); it was written by "
                                  "another run or before the config changed") from None
        if self.scaler and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.balancer.load_state_dict(state.get("balancer", {}))
        if self.smart is not None:
            self.smart.load_state_dict(state["smart"])
        if self.average is not None:
            if not state.get("averaging"):
                raise ValueError(f"{self.run_dir / STATE_FILE} holds no weight average, but train.averaging is "
                                 f"{self.config.train.averaging!r}: resume with the run's own config.yaml")
            self.average.load_state_dict(state["averaging"])
        self.step, self.epoch, self.position = state["step"], state["epoch"], state["position"]
        self.best_score, self.run_log.lines = state["best_score"], state["metric_lines"]
        self.epoch_loss = list(state["epoch_loss"])
        self.counters.update(state["counters"])
        if not self.world.is_main:  # rank 0 carries the totals so far; the sum over ranks stays the total
            self.counters.update({k: 0 for k in COUNTED})
        restore_rng_states(state["rng"])
        saved_world = state.get("world_size", 1)
        if self.world.distributed and saved_world == self.world.size:
            self.world.restore_rank_rng_states(state["rank_rng"])
        elif saved_world != self.world.size:
            log.warning("the checkpoint was written by %d process(es), this run has %d: training continues from "
                        "the same step, but dropout draws differ from an uninterrupted run", saved_world,
                        self.world.size)
        log.info("resumed %s at step %d (epoch %d, batch %d of it)", self.run_dir, self.step, self.epoch + 1, self.position)

    # ----- evaluation ---------------------------------------------------------------------
    def mean_epoch_loss(self) -> float:
        total, count = self.epoch_loss
        return total / count if count else float("nan")

    def evaluate_dev(self, train_loss: float) -> dict:
        dev = labelled_split(self.data, "dev")
        with self.averaged():
            metrics, predictions = evaluate_split(self.model, dev, self.config.train.eval_batch_size,
                                                  self.precision, self.config.train.eval_max_tokens, self.bars)
        record = {"step": self.step, "epoch": self.epoch + 1, "split": "dev", **metrics,
                  "train_loss": train_loss, "lr": self.lr_scheduler.get_last_lr()[0]}
        self.run_log.record(record)
        summary = " ".join(f"{k}={v:.4f}" for k, v in metrics.items())
        log.info("step %d epoch %d dev: %s", self.step, self.epoch + 1, summary)
        if metrics["composite"] > self.best_score:
            self.best_score = metrics["composite"]
            self.best_dev = predictions
            self.save_best()
        for callback in self.eval_callbacks:
            callback(self, record)
        return record

    def save_best(self) -> bool:
        """best/ from the weights that were evaluated (the average, when there is one), replaced atomically;
        never from weights that are not finite (False then, and best/ is left as it was)."""
        target = self.run_dir / "best"
        tmp = self.run_dir / ".best.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        with self.averaged():
            if not all(bool(torch.isfinite(p).all()) for p in self.model.parameters()):
                log.warning("the weights are not finite: best/ is not written")
                return False
            self.model.save_pretrained(tmp)
        old = self.run_dir / ".best.old"
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
        return True

    def write_predictions(self, model: MultitaskModel, known_dev: dict[str, TaskPredictions]) -> None:
        """Leaderboard files for every task's dev and test split. A dev split the best evaluation of this
        process already ran (``known_dev``) is written from those outputs, not run again: on the full dev
        sets that saves about a minute of a 30-minute quickstart, and the dev files then hold exactly the
        predictions behind the best record in metrics.jsonl. After a resume nothing is known and all run."""
        for splits in self.data.values():
            for split in ("dev", "test"):
                features = splits.get(split)
                if features is None or len(features) == 0:
                    continue
                result = known_dev.get(features.spec.name) if split == "dev" else None
                if result is None:
                    result = predict_features(model, features, self.config.train.eval_batch_size, self.precision,
                                              self.config.train.eval_max_tokens, self.bars)
                path = self.run_dir / "predictions" / prediction_file_name(features.spec, split)
                write_predictions(path, features.spec, result.ids, result.predictions)
                if split == "dev" and result.labels is not None:
                    write_analysis(analysis_file(self.run_dir, features.spec.name), features, result)

    # ----- the loop -----------------------------------------------------------------------
    def train(self, resume: bool = False) -> dict:
        """Train (or continue, with ``resume``) to the end; one process at a time per run directory.

        Returns results.json's contents. A run stopped by a request (Ctrl-C, a callback) returns
        ``{"interrupted": True, "step": ..., "run_dir": ..., "best": the best dev record so far or {}}``:
        ``Trainer(config, run_dir).train(resume=True)`` continues it. The log goes to ``run_dir/train.log``
        as under ``mtbert train``."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        lock = run_directory_lock(self.run_dir) if self.world.is_main else contextlib.nullcontext()
        with lock, log_file(self.run_dir / "train.log", self.world.is_main):
            return self._train(resume)

    def _train(self, resume: bool) -> dict:
        if resume:
            self.restore_state()
            finished = self.run_dir / "results.json"
            if (self.epoch >= self.total_epochs or self.step >= self.total_steps) and finished.exists():
                log.info("%s finished already; its results are in %s", self.run_dir, finished)
                return json.loads(finished.read_text(encoding="utf-8"))  # best/ is not needed, so not read
        elif self.world.is_main:
            self.config.save(self.run_dir / "config.yaml")
        self.run_log.start(resume)
        if self.selection is not None:
            self.selection_report = select_parameters(
                self.selection, self.config.model.selection, self.model, self.runner, self.optimizer,
                self.train_tasks, self.config.train.batch_size, self.config.train.seed, self.run_dir, resume,
                self.world, first_epoch=lambda: self.epoch_plan(0))
        if self.world.distributed:  # after the selection: DDP tracks the parameters that train
            self.runner.data_parallel = wrap_for_data_parallel(self.model, self.objectives, self.device)
        self.parameters = parameter_accounting(self.model)
        if self.world.is_main:
            (self.run_dir / "parameters.json").write_text(json.dumps(self.parameters, indent=2) + "\n",
                                                          encoding="utf-8")
        log.info("parameters:\n%s", format_accounting(self.parameters))
        try:
            with self.stop:
                while self.epoch < self.total_epochs and self.step < self.total_steps:
                    if not self._run_epoch():
                        records = read_metrics(self.run_dir, "dev") if self.world.is_main else []
                        return {"interrupted": True, "step": self.step, "run_dir": str(self.run_dir),
                                "best": max(records, key=lambda r: r["composite"]) if records else {}}
            return self.finish()
        finally:
            self.run_log.close()
            self.release_data_parallel()

    def release_data_parallel(self) -> None:
        """Drop the DistributedDataParallel wrapper once training is over. Its reducer holds the process
        group; a group still held after destroy_process_group is torn down only in interpreter
        finalization, where gloo's threads can abort the process (SIGABRT after a finished run, seen in
        CI). Freed here, while the interpreter is alive, the group goes with destroy_process_group."""
        if self.runner.data_parallel is not None:
            self.runner.data_parallel = None
            gc.collect()  # DDP's hooks make reference cycles: free it now, not at some later collection

    def _run_epoch(self) -> bool:
        """One epoch from the saved position. False when stopped by a request (Ctrl-C)."""
        plan = self.epoch_plan(self.epoch)
        self.orient_pairs(self.epoch)
        counts = plan_counts(plan, self.train_tasks)
        log.info("epoch %d (%s schedule): %d steps; examples per task: %s", self.epoch + 1,
                 self.config.train.schedule, len(plan), ", ".join(f"{t} {n}" for t, n in counts.items() if n))
        # a bar on a terminal only: elsewhere (a nohup log, a pipe) its carriage-return updates would fill the
        # file, and the log's step lines (train.log_every) already say how far the run is
        show = self.config.train.progress and self.world.is_main and sys.stderr.isatty()
        last = min(len(plan), self.position + self.total_steps - self.step)  # where this epoch's training ends
        bar = tqdm(total=last, initial=self.position, desc=f"epoch {self.epoch + 1}/{self.total_epochs}",
                   disable=not show, dynamic_ncols=True, leave=False)
        started, tokens_at_start = time.perf_counter(), self.counters["real_tokens"]
        while self.position < len(plan) and self.step < self.total_steps:
            step = plan[self.position]
            step_started = time.perf_counter()
            loss = self.train_step(step)
            task = "+".join(t for t, _ in step)
            self.counters["train_seconds"] += time.perf_counter() - step_started
            if math.isfinite(loss):
                self.epoch_loss[0] += loss
                self.epoch_loss[1] += 1
            self.step += 1
            self.position += 1
            bar.update(1)
            if self.runner.nonfinite_streak >= self.config.train.max_nonfinite_steps:
                bar.close()
                raise TrainingDiverged(
                    f"{self.runner.nonfinite_streak} consecutive steps (up to step {self.step}) had a non-finite loss: "
                    f"the weights have diverged. Lower train.lr ({self.config.train.lr:g}) or check the data; best/ "
                    "holds the best model evaluated before, if any (train.max_nonfinite_steps sets the limit)")
            elapsed = time.perf_counter() - started
            tokens_per_second = (self.counters["real_tokens"] - tokens_at_start) / max(elapsed, 1e-9)
            bar.set_postfix(loss=f"{loss:.3f}", task=task, tok_s=f"{tokens_per_second:.0f}")
            every = self.config.train.log_every
            if every and (self.step % every == 0 or self.step == self.total_steps):  # and the run's last step
                self.run_log.record({"step": self.step, "epoch": self.epoch + 1, "split": "train", "loss": loss,
                                     "mean_loss": self.mean_epoch_loss(), "lr": self.lr_scheduler.get_last_lr()[0]},
                                    scalars={"tokens_per_second": tokens_per_second})
                log.info("step %d/%d epoch %d: mean loss %.4f, %.0f tokens/s", self.step, self.total_steps,
                         self.epoch + 1, self.mean_epoch_loss(), tokens_per_second)
            for callback in self.callbacks:
                callback(self)
            if self.evaluation_due(len(plan)):
                self.evaluate_on_main()
            if self.world.any(self.stop.requested):
                bar.close()
                self.save_state()
                log.info("stopped at step %d; continue with: mtbert train --resume %s", self.step, self.run_dir)
                return False
            if self.config.train.checkpoint_every and self.step % self.config.train.checkpoint_every == 0:
                self.save_state()
        bar.close()
        self.save_state()  # the epoch's batches are done: an interruption during evaluation redoes only that
        if self.config.train.eval_every_epoch or self.step >= self.total_steps:
            self.evaluate_on_main()
        if self.position >= len(plan):
            self.epoch, self.position = self.epoch + 1, 0
            self.epoch_loss = [0.0, 0]
        self.save_state()
        return True

    def evaluation_due(self, epoch_steps: int) -> bool:
        """A within-epoch evaluation (train.eval_every) falls on this step. Not on an epoch's last step
        nor the run's last: the epoch end evaluates there, and one step must not be recorded twice."""
        every = self.config.train.eval_every
        return bool(every) and self.step % every == 0 and self.position < epoch_steps and self.step < self.total_steps

    def evaluate_on_main(self) -> None:
        """Dev evaluation by rank 0 alone (it holds best/ and metrics.jsonl); the others wait for it."""
        if self.world.is_main:
            self.evaluate_dev(self.mean_epoch_loss())
        self.world.barrier()

    def finish(self) -> dict:
        """Rank 0 writes predictions and results.json and returns the results (counters summed over the
        ranks); other ranks return their rank, steps and the summed examples."""
        self.counters.update(self.counted_totals())
        if not self.world.is_main:
            self.world.barrier()
            return {"rank": self.world.rank, "steps": self.step, "examples_seen": self.counters["examples"]}
        best_dir = self.run_dir / "best"
        if not best_dir.exists():  # no evaluation scored a finite composite (or none ran): the final model
            log.warning("no dev evaluation scored a finite composite: best/ holds the final weights")
            if not self.save_best():
                raise TrainingDiverged("no dev evaluation scored a finite composite and the final weights are not "
                                       "finite: nothing was saved. Lower train.lr or check the data")
        best = MultitaskModel.from_pretrained(best_dir).to(self.device)
        self.write_predictions(best, self.best_dev)
        records = read_metrics(self.run_dir, "dev")
        best_record = max(records, key=lambda r: r["composite"]) if records else {}
        padded = self.counters["padded_tokens"]
        results = {
            "best": best_record,
            "steps": self.step,
            "train_seconds": round(self.counters["train_seconds"], 2),
            "examples_seen": self.counters["examples"],
            "train_tokens_per_second": round(self.counters["real_tokens"] / max(self.counters["train_seconds"], 1e-9), 1),
            "padding_share": round(1 - self.counters["real_tokens"] / padded, 4) if padded else 0.0,
            "skipped_nonfinite_batches": self.counters["skipped_nonfinite"],
            "skipped_empty_labels": {t: d.skipped for t, d in self.data.items()},
            "device": str(self.device), "precision": self.precision.name,
            "parameters": self.parameters,
            "parameter_selection": self.selection_report,
            "saved_bytes": sum(f.stat().st_size for f in best_dir.iterdir() if f.is_file()),
            "delta_checkpoint": (best_dir / DELTA_FILE).exists(),
        }
        if self.world.distributed:
            results["processes"] = self.world.size
        if self.config.train.keep_checkpoint == "none":
            (self.run_dir / STATE_FILE).unlink(missing_ok=True)
        results["run_bytes"] = directory_bytes(self.run_dir)  # what the run leaves on disk (results.json aside)
        (self.run_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        self.world.barrier()
        return results


@contextlib.contextmanager
def log_file(path: Path, active: bool = True):
    """The run's log lines into ``path`` while training, unless a handler writes there already (the command
    line sets one up): a run started from Python keeps the same train.log as one started by mtbert train."""
    target = path.resolve()
    handlers = logging.getLogger().handlers + log.handlers
    if not active or any(isinstance(h, logging.FileHandler) and Path(h.baseFilename).resolve() == target
                         for h in handlers):
        yield
        return
    handler = logging.FileHandler(target, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    handler.setLevel(logging.INFO)
    level = log.level
    if log.getEffectiveLevel() > logging.INFO:
        log.setLevel(logging.INFO)
    log.addHandler(handler)
    try:
        yield
    finally:
        log.removeHandler(handler)
        handler.close()
        log.setLevel(level)


def check_position(state: dict, path: Path, total_steps: int, total_epochs: int) -> None:
    """A checkpoint's step, epoch and position must be whole numbers this run can have reached."""
    limits = {"step": total_steps, "epoch": total_epochs, "position": total_steps}
    for key, limit in limits.items():
        value = state.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= limit:
            raise CheckpointError(f"{path}: {key} {value!r} is not one this run can reach (0 to {limit}): the file is "
                                  "damaged or was edited; restore it or start a new run")


def config_differences(saved: dict, current: dict, prefix: str = "") -> list[str]:
    """``field: saved -> current`` for every setting that differs, except RESUMABLE_CHANGES."""
    changes = []
    for key in sorted(set(saved) | set(current)):
        dotted = f"{prefix}{key}"
        if dotted in RESUMABLE_CHANGES:
            continue
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changes += config_differences(a, b, dotted + ".")
        elif a != b:
            changes.append(f"{dotted}: {a!r} in the checkpoint, {b!r} now")
    return changes


def directory_bytes(directory: Path) -> int:
    return sum(f.stat().st_size for f in Path(directory).rglob("*") if f.is_file())


def default_run_dir(config: ExperimentConfig, output_dir: Optional[str]) -> Path:
    return Path(output_dir or config.output_dir or Path("runs") / config.name)
