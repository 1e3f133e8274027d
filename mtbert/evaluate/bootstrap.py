"""Is one system better than another on a dev set, counting the dev set's own noise?

A dev set of 1,101 SST sentences gives an accuracy near 0.49 a standard error of about 0.015: larger
than most differences between two multitask recipes. The spread over training seeds alone misses it, so
comparisons here use a paired bootstrap: each of ``samples`` replicates draws the dev examples of every
task with replacement (the same draw for both systems, which is what pairs them) and, for each system
independently, its seeds with replacement; the replicate's difference is system minus other of the
seed-averaged metric (and of the composite). The 95% interval is the 2.5th to 97.5th percentile of the
replicate differences; the difference reported is the one on the full dev sets over all seeds.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..tasks import METRICS, TaskSpec, get_task, metric_key, read_examples
from .predictions import prediction_file_name, read_predictions

Run = Mapping[str, np.ndarray]  # task -> predictions, aligned with the gold labels of that task


@dataclasses.dataclass(frozen=True)
class Interval:
    """A difference (system minus other) and its bootstrap interval."""

    difference: float
    low: float
    high: float
    level: float = 0.95

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def __str__(self) -> str:
        return f"{self.difference:+.3f} [{self.low:+.3f}, {self.high:+.3f}]"


def _metric_per_replicate(metric: str, predictions: np.ndarray, gold: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """The metric of one run on each replicate's resampled examples (``draws``: replicates x examples)."""
    if metric == "accuracy":
        return (predictions == gold)[draws].mean(axis=1)
    if metric == "pearson":
        x, y = predictions[draws], gold[draws]
        x = x - x.mean(axis=1, keepdims=True)
        y = y - y.mean(axis=1, keepdims=True)
        denominator = np.sqrt((x * x).sum(axis=1) * (y * y).sum(axis=1))
        with np.errstate(invalid="ignore", divide="ignore"):
            r = (x * y).sum(axis=1) / denominator
        return np.where(denominator > 0, r, 0.0)  # as metrics.pearson: undefined counts as no correlation
    raise ValueError(f"no bootstrap for metric {metric!r}; known: accuracy, pearson")


def _check_runs(name: str, runs: Sequence[Run], gold: Mapping[str, np.ndarray]) -> None:
    if not runs:
        raise ValueError(f"{name}: no runs to compare")
    for number, run in enumerate(runs, start=1):
        for task, labels in gold.items():
            if task not in run:
                raise ValueError(f"{name}, run {number}: no predictions for task {task}")
            if len(run[task]) != len(labels):
                raise ValueError(f"{name}, run {number}: {len(run[task])} predictions for {task}, "
                                 f"{len(labels)} gold labels")


def paired_bootstrap(system: Sequence[Run], other: Sequence[Run], gold: Mapping[str, np.ndarray],
                     metrics: Mapping[str, str], samples: int = 2000, seed: int = 0,
                     level: float = 0.95) -> dict[str, Interval]:
    """``metric_key(task)`` and ``"composite"`` -> the interval of system minus other.

    ``system`` and ``other`` hold one run (a seed) each: task -> its dev predictions in the order of
    ``gold[task]``; ``metrics`` maps each task to its metric (accuracy, pearson)."""
    _check_runs("system", system, gold)
    _check_runs("other", other, gold)
    if samples < 10:
        raise ValueError(f"samples must be at least 10, not {samples}")
    rng = np.random.default_rng(seed)
    seed_draws = {name: rng.integers(0, len(runs), size=(samples, len(runs)))
                  for name, runs in (("system", system), ("other", other))}
    replicate = np.arange(samples)[:, None]
    per_task, observed = {}, {}
    for task, labels in gold.items():
        labels = np.asarray(labels, dtype=np.float64)
        metric = metrics[task]
        draws = rng.integers(0, len(labels), size=(samples, len(labels)))
        means, whole = {}, {}
        for name, runs in (("system", system), ("other", other)):
            table = np.stack([_metric_per_replicate(metric, np.asarray(run[task], dtype=np.float64), labels, draws)
                              for run in runs], axis=1)  # replicates x runs
            means[name] = table[replicate, seed_draws[name]].mean(axis=1)
            whole[name] = float(np.mean([METRICS[metric][0](run[task], labels) for run in runs]))  # the task's own metric
        per_task[task] = means
        observed[task] = whole
    scale = {task: METRICS[metrics[task]][2] for task in gold}
    out: dict[str, Interval] = {}
    tails = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    for task in gold:
        diffs = per_task[task]["system"] - per_task[task]["other"]
        low, high = np.percentile(diffs, tails)
        out[metric_key(task, metrics[task])] = Interval(observed[task]["system"] - observed[task]["other"],
                                                        float(low), float(high), level)
    composite = {name: sum(scale[t](per_task[t][name]) for t in gold) / len(gold) for name in ("system", "other")}
    diffs = composite["system"] - composite["other"]
    low, high = np.percentile(diffs, tails)
    difference = (sum(scale[t](observed[t]["system"]) for t in gold)
                  - sum(scale[t](observed[t]["other"]) for t in gold)) / len(gold)
    out["composite"] = Interval(float(difference), float(low), float(high), level)
    return out


# ----- prediction files ---------------------------------------------------------------------------
def dev_gold(specs: Sequence[TaskSpec], data_dir: Path) -> dict[str, tuple[list[str], np.ndarray]]:
    """Each task's dev ids and gold labels, as the training run read them (empty labels skipped)."""
    gold = {}
    for spec in specs:
        read = read_examples(spec, Path(data_dir) / spec.files["dev"], labelled=True)
        gold[spec.name] = ([e.id for e in read.examples], np.array([e.label for e in read.examples], dtype=np.float64))
    return gold


def read_dev_run(predictions_dir: Path, gold: Mapping[str, tuple[list[str], np.ndarray]],
                 specs: Mapping[str, TaskSpec]) -> dict[str, np.ndarray]:
    """One run's dev predictions (its ``predictions/`` folder of leaderboard files), in gold order."""
    run = {}
    for task, (ids, _) in gold.items():
        path = Path(predictions_dir) / prediction_file_name(specs[task], "dev")
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no dev predictions for {task}")
        values = read_predictions(path)
        missing = [i for i in ids if i not in values]
        if missing:
            raise ValueError(f"{path}: no prediction for {len(missing)} dev example(s), e.g. {missing[0]}")
        run[task] = np.array([float(values[i]) for i in ids], dtype=np.float64)
    return run


def compare_prediction_dirs(system: Sequence[Path], other: Sequence[Path], tasks: Sequence[str], data_dir: Path,
                            samples: int = 2000, seed: int = 0) -> dict[str, Interval]:
    """The paired bootstrap of two sets of runs from their ``predictions/`` folders (one per seed)."""
    specs = {name: get_task(name) for name in tasks}
    gold = dev_gold(list(specs.values()), data_dir)
    labels = {task: values for task, (_, values) in gold.items()}
    runs = [[read_dev_run(path, gold, specs) for path in paths] for paths in (system, other)]
    return paired_bootstrap(runs[0], runs[1], labels, {t: s.metric for t, s in specs.items()}, samples, seed)
