"""Sentiment augmentation (report 003): extra training data for the SST head from other datasets.

Each augmentation is an auxiliary training task: it reads another task's training file, keeps the
examples it can use, and computes its loss through the SST head. It takes part in the batch schedule
like a task (under its own name), has no dev or test split, and its loss carries a weight.

- ``cfimdb_to_sst``: CFIMDB reviews through the SST head, the five logits folded into two as the
  report does: negative = l0 + l1 + l2, positive = l2 + l3 + l4; cross-entropy on the binary label.
- ``quora_sentiment_consistency`` / ``sts_sentiment_consistency``: two sentences that are duplicates
  (Quora label 1) or nearly the same (STS score > 4.5) should carry the same sentiment: each sentence
  goes through the SST head alone and the symmetric KL between the two sentiment distributions is
  the loss (symmetric, so the order of the pair does not matter).

The report weights the sentiment loss as ½·SST + ⅙·CFIMDB + ⅙·Quora + ⅙·STS; those are the defaults
(``default_weight`` here, ``SENTIMENT_WEIGHT`` for SST itself), and ``train.task_weights`` overrides them.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import torch
import torch.nn.functional as F

from ..registry import Registry
from ..tasks import LOSSES, Example, TaskSpec, get_task
from .features import Batch
from .model import MultitaskModel

AUGMENTATIONS: Registry[type["Augmentation"]] = Registry("augmentation")
register_augmentation = AUGMENTATIONS.register
SENTIMENT_WEIGHT = 0.5  # SST's own weight when sentiment augmentation is on (report 003)


class Augmentation:
    registry_name = ""
    source_task = ""
    head_task = "sst"
    encoding = "joint"
    kind = "classification"  # what the balancer sees: the loss is on sentiment distributions
    default_weight = 1.0 / 6.0

    def __init__(self, threshold: Optional[float] = None):
        self.threshold = threshold

    @property
    def name(self) -> str:
        return self.registry_name

    def spec(self) -> TaskSpec:
        """The source task's files and columns under this augmentation's name (its batches' task)."""
        source = get_task(self.source_task)
        return dataclasses.replace(source, name=self.name, files={"train": source.files["train"]})

    def keep(self, example: Example) -> bool:
        return True

    def loss(self, model: MultitaskModel, batch: Batch) -> torch.Tensor:
        raise NotImplementedError


def fold_five_to_two(logits: torch.Tensor) -> torch.Tensor:
    """SST's five sentiment logits as two: (l0 + l1 + l2, l2 + l3 + l4); neutral counts for both."""
    return torch.stack([logits[:, 0] + logits[:, 1] + logits[:, 2], logits[:, 2] + logits[:, 3] + logits[:, 4]], -1)


@register_augmentation("cfimdb_to_sst")
class CfimdbThroughSst(Augmentation):
    source_task = "cfimdb"

    def loss(self, model: MultitaskModel, batch: Batch) -> torch.Tensor:
        outputs, masks = model.encode(batch, task=self.head_task)
        logits = model.heads[self.head_task](outputs, masks).scores.float()
        return F.cross_entropy(fold_five_to_two(logits), batch.labels.long())


class SentimentConsistency(Augmentation):
    """The sentiment of a pair's two sentences made alike: ``divergence`` ``symmetric_kl`` (default) or
    ``kl`` (report 003's word: KL of the second sentence's distribution from the first's)."""

    encoding = "separate"
    default_threshold = 0.5

    def __init__(self, threshold: Optional[float] = None, divergence: str = "symmetric_kl"):
        super().__init__(threshold)
        chosen = LOSSES.get(divergence)
        if chosen.role != "divergence":
            raise ValueError(f"divergence {divergence!r} is a {chosen.role}; choose symmetric_kl or kl")
        self.divergence = chosen()

    def keep(self, example: Example) -> bool:
        threshold = self.default_threshold if self.threshold is None else self.threshold
        return example.label is not None and float(example.label) > threshold

    def loss(self, model: MultitaskModel, batch: Batch) -> torch.Tensor:
        outputs, masks = model.encode(batch, task=self.head_task)
        head = model.heads[self.head_task]
        first = head([outputs[0]], [masks[0]]).scores
        second = head([outputs[1]], [masks[1]]).scores
        return self.divergence(first, second, kind="classification")


@register_augmentation("quora_sentiment_consistency")
class QuoraSentimentConsistency(SentimentConsistency):
    """Quora duplicates (label 1)."""

    source_task = "quora"


@register_augmentation("sts_sentiment_consistency")
class StsSentimentConsistency(SentimentConsistency):
    """STS pairs scored above 4.5 (``threshold`` to change it)."""

    source_task = "sts"
    default_threshold = 4.5


def build_augmentation(name: str, options: Optional[dict] = None) -> Augmentation:
    try:
        return AUGMENTATIONS.get(name)(**(options or {}))
    except TypeError as error:
        raise ValueError(f"augmentation {name!r}: bad options {options!r} ({error})") from None
