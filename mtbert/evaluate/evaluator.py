"""Running a trained model over a split: predictions, metrics and the composite score."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Callable, Optional

import torch
from tqdm.auto import tqdm

from ..bert import EncoderOutput
from ..multitask import Batch, MultitaskModel, TaskFeatures, collate, sorted_batches
from ..tasks import METRICS, composite_score, metric_key, predictions_from_outputs
from ..precision import Precision

log = logging.getLogger("mtbert")


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


def default_eval_max_tokens(device: torch.device) -> int:
    """The padded-token cap of an evaluation batch when ``train.eval_max_tokens`` is null.

    CPU: 1,024: a CPU pays for every padded token. In fp32 it was the fastest of 1,024/2,048/4,096/no cap
    for MiniLM on SST and STS dev (a one-off timing: 3,263 real tok/s at 3.0% padding against 2,871 at
    12.5% uncapped on SST); in bf16, ``benchmarks/eval_speed.py`` over the three dev sets put 2,048 within
    5% of it and larger caps behind (docs/speed.md). GPU: no cap; there each batch costs a fixed launch
    overhead that small batches cannot hide (benchmarks/throughput.py on an H100: README, Speed).
    """
    return 0 if device.type == "cuda" else 1024


@torch.no_grad()
def batched_outputs(model: MultitaskModel, features: TaskFeatures, batch_size: int, precision: Precision,
                    forward: Callable[[Batch], torch.Tensor], max_tokens: Optional[int] = None,
                    progress: Optional[bool] = None) -> torch.Tensor:
    """``forward(batch)`` for every example, in example order (fp32, on the CPU), over length-sorted
    batches capped in padded tokens. The batches' outputs stay on the device until the end: one copy
    back, not one wait per batch. ``progress``: a bar per task (None: only on a terminal).

    One autocast region spans all the batches: autocast keeps its low-precision copy of each trainable
    weight until the region ends, so the weights are cast once per pass instead of once per batch (for
    MiniLM in bf16, ~11M weights re-cast for every batch of at most 1,024 tokens)."""
    model.eval()
    if max_tokens is None:
        max_tokens = default_eval_max_tokens(precision.device)
    order: list[int] = []
    results = []
    batches = sorted_batches(features.lengths, batch_size, max_tokens)
    with precision.autocast():
        for indices in tqdm(batches, desc=features.spec.name, unit="batch", leave=False, dynamic_ncols=True,
                            disable=(None if progress is None else not progress)):
            batch = collate(features, indices, model.tokenizer.pad_token_id).to(precision.device)
            results.append(forward(batch).float())
            order.extend(indices)
    if not results:
        return torch.empty(0)
    stacked = torch.cat(results).cpu()
    outputs = torch.empty_like(stacked)
    outputs[torch.tensor(order)] = stacked
    return outputs


def head_scores_in_fp32(model: MultitaskModel, batch: Batch) -> torch.Tensor:
    """The encoder in the caller's autocast, the head in fp32: under bf16 a head's last layer rounds its
    scores to bf16's 8 bits (an STS score of 4.96875 or 2.875; 433 distinct scores in 1,725 test pairs),
    while the head's own cost is a few small matrix products."""
    outputs, masks = model.encode(batch)
    with torch.autocast(batch.input_ids.device.type, enabled=False):
        outputs = [EncoderOutput(o.last_hidden_state.float(), o.pooler_output.float()) for o in outputs]
        return model.heads[batch.task](outputs, masks).scores


def head_outputs(model: MultitaskModel, features: TaskFeatures, batch_size: int, precision: Precision,
                 max_tokens: Optional[int] = None, progress: Optional[bool] = None,
                 forward: Optional[Callable[[Batch], torch.Tensor]] = None) -> torch.Tensor:
    """The head's raw outputs (logits, one logit, or a score) for every example, in example order, in fp32.
    ``forward``: what computes a batch's scores (default: the model, its head in fp32; the Predictor's
    ONNX backends pass their own)."""
    forward = forward or (lambda batch: head_scores_in_fp32(model, batch))
    return batched_outputs(model, features, batch_size, precision, forward, max_tokens, progress)


def predict_features(model: MultitaskModel, features: TaskFeatures, batch_size: int,
                     precision: Precision, max_tokens: Optional[int] = None,
                     progress: Optional[bool] = None,
                     forward: Optional[Callable[[Batch], torch.Tensor]] = None) -> TaskPredictions:
    """Predictions for one task split. A task with pair order ``both`` gets the mean of the head's
    outputs (logits or scores) over the pairs as given and swapped."""
    spec = features.spec
    stacked = head_outputs(model, features, batch_size, precision, max_tokens, progress, forward)
    if model.pair_order(spec.name) == "both" and len(features):
        swapped = features.oriented([True] * len(features))
        stacked = (stacked + head_outputs(model, swapped, batch_size, precision, max_tokens, progress, forward)) / 2
    predictions = predictions_from_outputs(stacked, spec).tolist() if len(stacked) else []
    labels = features.labels.tolist() if features.labels is not None else None
    return TaskPredictions(spec.name, [e.id for e in features.examples], predictions, labels, stacked)


def evaluate_split(model: MultitaskModel, features_by_task: dict[str, TaskFeatures], batch_size: int,
                   precision: Precision, max_tokens: Optional[int] = None, progress: Optional[bool] = None,
                   forward: Optional[Callable[[Batch], torch.Tensor]] = None
                   ) -> tuple[dict[str, float], dict[str, TaskPredictions]]:
    """Metrics of every task on one labelled split, plus the composite over them (``forward``: as
    ``head_outputs`` takes it, e.g. a Predictor backend's ``scores``)."""
    metrics: dict[str, float] = {}
    predictions: dict[str, TaskPredictions] = {}
    metric_names = {}
    for task, features in features_by_task.items():
        started = time.perf_counter()
        result = predict_features(model, features, batch_size, precision, max_tokens, progress, forward)
        log.info("%s: %d examples scored in %.1f s", task, len(features), time.perf_counter() - started)
        predictions[task] = result
        metric = model.specs[task].metric
        metric_names[task] = metric
        metrics[metric_key(task, metric)] = result.metric(metric)
    metrics["composite"] = composite_score(metrics, metric_names)
    return metrics, predictions
