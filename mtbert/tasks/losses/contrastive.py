"""Losses on the two sentence vectors of a Siamese head (report 002)."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from ..heads import HeadOutput
from ..spec import TaskSpec
from .base import LabelLoss, positive_mask, register_loss


class PairVectorLoss(LabelLoss):
    """A loss on the Siamese vectors u, v that needs to know which pairs are positives: label 1, or for a
    regression task a label at or above ``threshold`` (default the middle of the range)."""

    kinds = ("binary", "regression")
    needs_vectors = True

    def __init__(self, spec: TaskSpec, threshold: Optional[float] = None):
        super().__init__(spec)
        self.threshold = threshold

    def positives(self, labels: torch.Tensor) -> torch.Tensor:
        return positive_mask(labels, self.spec, self.threshold)


@register_loss("mnr")
class MultipleNegativesRanking(PairVectorLoss):
    """Multiple-negatives ranking (Henderson et al. 2017): for each positive pair (u_i, v_i) in the batch,
    v_i must score above the v_j of every other positive pair: cross-entropy over scale·cos(u_i, v_j).
    Only positive pairs enter; a batch with fewer than two of them contributes zero."""

    def __init__(self, spec: TaskSpec, scale: float = 20.0, threshold: Optional[float] = None):
        super().__init__(spec, threshold)
        self.scale = scale

    def __call__(self, output: HeadOutput, labels: torch.Tensor) -> torch.Tensor:
        u, v = output.vectors
        keep = self.positives(labels)
        if int(keep.sum()) < 2:
            return (u.sum() + v.sum()).float() * 0.0  # keeps the graph: no gradient, no special case
        anchors = F.normalize(u[keep].float(), dim=-1)
        candidates = F.normalize(v[keep].float(), dim=-1)
        scores = self.scale * anchors @ candidates.T
        return F.cross_entropy(scores, torch.arange(len(scores), device=scores.device))


@register_loss("cosine_embedding")
class CosineEmbedding(PairVectorLoss):
    """1 − cos(u, v) for a positive pair, max(0, cos(u, v) − margin) for a negative one (mean over the
    batch, as torch's CosineEmbeddingLoss). Regression labels are split at ``threshold``."""

    def __init__(self, spec: TaskSpec, margin: float = 0.0, threshold: Optional[float] = None):
        super().__init__(spec, threshold)
        self.margin = margin

    def __call__(self, output: HeadOutput, labels: torch.Tensor) -> torch.Tensor:
        u, v = output.vectors
        cosine = F.cosine_similarity(u.float(), v.float(), dim=-1)
        positive = self.positives(labels)
        return torch.where(positive, 1.0 - cosine, (cosine - self.margin).clamp_min(0.0)).mean()
