"""Task metrics and the composite score used to pick the best model."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

Metric = Callable[[Sequence[float], Sequence[float]], float]


def accuracy(predictions: Sequence[float], labels: Sequence[float]) -> float:
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    return float((predictions == labels).mean()) if len(labels) else float("nan")


def pearson(predictions: Sequence[float], labels: Sequence[float]) -> float:
    predictions = np.asarray(predictions, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    if len(labels) < 2 or predictions.std() == 0 or labels.std() == 0:
        return 0.0  # undefined correlation: count it as no correlation rather than NaN
    return float(np.corrcoef(predictions, labels)[0, 1])


# name -> (function, short name used in metric keys, map onto [0, 1] for the composite)
METRICS: dict[str, tuple[Metric, str, Callable[[float], float]]] = {
    "accuracy": (accuracy, "acc", lambda value: value),
    "pearson": (pearson, "pearson", lambda value: (value + 1.0) / 2.0),
}


def metric_key(task_name: str, metric: str) -> str:
    return f"{task_name}_{METRICS[metric][1]}"


def composite_score(values: dict[str, float], metrics: dict[str, str]) -> float:
    """Mean over tasks of each metric mapped to [0, 1].

    For SST, Quora and STS this is the minBERT leaderboard's (sst_acc + quora_acc + (sts_r + 1)/2) / 3.
    ``metrics`` maps each task to its metric name; ``values`` holds the metric keys.
    """
    scores = [METRICS[m][2](values[metric_key(t, m)]) for t, m in metrics.items()]
    return float(np.mean(scores)) if scores else float("nan")
