"""Running a trained model over a split: predictions, metrics and the composite score."""

from __future__ import annotations

import dataclasses
from typing import Optional

import torch

from ..config import TrainConfig
from ..multitask import MultitaskModel, TaskFeatures, collate, sorted_batches
from ..tasks import METRICS, composite_score, metric_key, predictions_from_outputs
from ..precision import Precision


@dataclasses.dataclass
class TaskPredictions:
    task: str
    ids: list[str]
    predictions: list[float]
    labels: Optional[list[float]]
    outputs: torch.Tensor  # raw head outputs (logits or scores), in example order

    def metric(self, name: str) -> float:
        if self.labels is None:
            raise ValueError(f"{self.task}: unlabelled split, no metric")
        return METRICS[name][0](self.predictions, self.labels)


@torch.no_grad()
def head_outputs(model: MultitaskModel, features: TaskFeatures, batch_size: int, precision: Precision,
                 max_tokens: int = TrainConfig.eval_max_tokens) -> torch.Tensor:
    """The head's raw outputs for every example, in example order (fp32, on the CPU)."""
    model.eval()
    outputs: list[Optional[torch.Tensor]] = [None] * len(features)
    for indices in sorted_batches(features.lengths, batch_size, max_tokens):
        batch = collate(features, indices, model.tokenizer.pad_token_id).to(precision.device)
        with precision.autocast():
            result = model(batch).scores.float().cpu()
        for row, index in enumerate(indices):
            outputs[index] = result[row]
    return torch.stack(outputs) if outputs else torch.empty(0)


def predict_features(model: MultitaskModel, features: TaskFeatures, batch_size: int,
                     precision: Precision, max_tokens: int = TrainConfig.eval_max_tokens) -> TaskPredictions:
    """Predictions for one task split. A task with pair order ``both`` gets the mean of the head's
    outputs (logits or scores) over the pairs as given and swapped."""
    spec = features.spec
    stacked = head_outputs(model, features, batch_size, precision, max_tokens)
    if model.pair_order(spec.name) == "both" and len(features):
        swapped = features.oriented([True] * len(features))
        stacked = (stacked + head_outputs(model, swapped, batch_size, precision, max_tokens)) / 2
    predictions = predictions_from_outputs(stacked, spec).tolist() if len(stacked) else []
    labels = features.labels.tolist() if features.labels is not None else None
    return TaskPredictions(spec.name, [e.id for e in features.examples], predictions, labels, stacked)


def evaluate_split(model: MultitaskModel, features_by_task: dict[str, TaskFeatures], batch_size: int,
                   precision: Precision, max_tokens: int = TrainConfig.eval_max_tokens
                   ) -> tuple[dict[str, float], dict[str, TaskPredictions]]:
    """Metrics of every task on one labelled split, plus the composite over them."""
    metrics: dict[str, float] = {}
    predictions: dict[str, TaskPredictions] = {}
    metric_names = {}
    for task, features in features_by_task.items():
        result = predict_features(model, features, batch_size, precision, max_tokens)
        predictions[task] = result
        metric = model.specs[task].metric
        metric_names[task] = metric
        metrics[metric_key(task, metric)] = result.metric(metric)
    metrics["composite"] = composite_score(metrics, metric_names)
    return metrics, predictions
