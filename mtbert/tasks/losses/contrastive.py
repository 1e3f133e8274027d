"""Losses on the two sentence vectors of a Siamese head (report 002)."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from ..heads import HeadOutput
from ..spec import TaskSpec
from .base import LabelLoss, positive_mask, register_loss


@register_loss("mnr")
class MultipleNegativesRanking(LabelLoss):
    """Multiple-negatives ranking (Henderson et al. 2017): for each positive pair (u_i, v_i) in the batch,
    v_i must score above the v_j of every other positive pair: cross-entropy over scale·cos(u_i, v_j).
    Only positive pairs enter; a batch with fewer than two of them contributes zero."""

    kinds = ("binary", "regression")
    needs_vectors = True

    def __init__(self, spec: TaskSpec, scale: float = 20.0, threshold: Optional[float] = None):
        super().__init__(spec)
        self.scale, self.threshold = scale, threshold

    def __call__(self, output: HeadOutput, labels: torch.Tensor) -> torch.Tensor:
        u, v = output.vectors
        keep = positive_mask(labels, self.spec, self.threshold)
        if int(keep.sum()) < 2:
            return (u.sum() + v.sum()).float() * 0.0  # keeps the graph: no gradient, no special case
        anchors = F.normalize(u[keep].float(), dim=-1)
        candidates = F.normalize(v[keep].float(), dim=-1)
        scores = self.scale * anchors @ candidates.T
        return F.cross_entropy(scores, torch.arange(len(scores), device=scores.device))


@register_loss("cosine_embedding")
class CosineEmbedding(LabelLoss):
    """1 − cos(u, v) for a positive pair, max(0, cos(u, v) − margin) for a negative one (mean over the
    batch, as torch's CosineEmbeddingLoss). Regression labels are split at ``threshold``."""

    kinds = ("binary", "regression")
    needs_vectors = True

    def __init__(self, spec: TaskSpec, margin: float = 0.0, threshold: Optional[float] = None):
        super().__init__(spec)
        self.margin, self.threshold = margin, threshold

    def __call__(self, output: HeadOutput, labels: torch.Tensor) -> torch.Tensor:
        u, v = output.vectors
        cosine = F.cosine_similarity(u.float(), v.float(), dim=-1)
        positive = positive_mask(labels, self.spec, self.threshold)
        return torch.where(positive, 1.0 - cosine, (cosine - self.margin).clamp_min(0.0)).mean()
