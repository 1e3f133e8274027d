"""Siamese pair heads (Sentence-BERT style; reports 000, 002, 004): u and v are the two sentences'
vectors from the shared encoder, each encoded alone."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..spec import TaskSpec
from .base import HeadContext, SiameseHead, register_head


@register_head("siamese_concat")
class SiameseConcatHead(SiameseHead):
    """dropout → linear over [u, v, |u−v|], with u⊙v appended when ``product`` is on (S-CD in 002)."""

    def __init__(self, spec: TaskSpec, context: HeadContext, dropout: float = 0.1, pooling: str = "pooler",
                 product: bool = False):
        super().__init__(spec, context, dropout, pooling)
        self.product = product
        parts = 4 if product else 3
        self.output = nn.Linear(parts * context.hidden_size, spec.output_dim)

    def options(self) -> dict:
        return {**super().options(), "product": self.product}

    def combine(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        parts = [u, v, (u - v).abs()] + ([u * v] if self.product else [])
        return self.output(self.dropout(torch.cat(parts, dim=-1)))


@register_head("cosine")
class CosineHead(SiameseHead):
    """cos(u, v), mapped onto the task's output (S-CS in 002; STS in 004).

    Regression: ``low + (high − low)·cos`` (0-5 for STS: 5·cos; predictions are clamped to the range),
    no parameters, so the score is the cosine itself, rescaled. Binary: a logit ``scale·(cos − offset)``
    with a learned scale and offset (started at ``scale`` and ``offset``), because a cosine alone is not a
    calibrated log-odds.
    """

    kinds = ("binary", "regression")

    def __init__(self, spec: TaskSpec, context: HeadContext, dropout: float = 0.1, pooling: str = "pooler",
                 scale: float = 10.0, offset: float = 0.5):
        super().__init__(spec, context, dropout, pooling)
        self.initial_scale, self.initial_offset = float(scale), float(offset)
        if spec.kind == "binary":
            self.scale = nn.Parameter(torch.tensor(self.initial_scale))
            self.offset = nn.Parameter(torch.tensor(self.initial_offset))

    def options(self) -> dict:
        return {**super().options(), "scale": self.initial_scale, "offset": self.initial_offset}

    def combine(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        cosine = F.cosine_similarity(u.float(), v.float(), dim=-1)
        if self.spec.kind == "binary":
            return (self.scale * (cosine - self.offset)).unsqueeze(-1)
        low, high = self.spec.label_range
        return (low + (high - low) * cosine).unsqueeze(-1)


@register_head("dot")
class DotProductHead(SiameseHead):
    """u·v, the raw dot product of the two sentence vectors, as the logit (binary) or the score
    (regression, clamped to the task's range when predicted): report 000's base model, "simple dot product
    on embeddings", with no parameters of its own (``cosine`` is the normalised form)."""

    kinds = ("binary", "regression")

    def combine(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return (self.dropout(u).float() * self.dropout(v).float()).sum(-1, keepdim=True)


@register_head("bilinear")
class BilinearHead(SiameseHead):
    """u^T W v + b with a learned W per output (000's "multiplicative dot product")."""

    def __init__(self, spec: TaskSpec, context: HeadContext, dropout: float = 0.1, pooling: str = "pooler"):
        super().__init__(spec, context, dropout, pooling)
        self.output = nn.Bilinear(context.hidden_size, context.hidden_size, spec.output_dim)

    def combine(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        # CPU autocast has no rule for bilinear: under bf16 the pooled vectors arrive in bf16 while W stays
        # fp32, and torch refuses mixed dtypes, so the (small) product runs in W's dtype.
        dtype = self.output.weight.dtype
        return self.output(self.dropout(u).to(dtype), self.dropout(v).to(dtype))
