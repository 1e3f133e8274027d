"""The relational layer of report 004: related pair tasks (Quora and STS) share one hidden layer over
rich pair features, then each task has its own output layer."""

from __future__ import annotations

import torch
from torch import nn

from ..spec import TaskSpec
from .base import HeadContext, SiameseHead, register_head


def relational_features(u: torch.Tensor, v: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """[u, v, |u−v|, u⊙v/(‖u‖‖v‖+ε)]; the last block sums to cos(u, v) (up to ε)."""
    scaled_product = u * v / (u.norm(dim=-1, keepdim=True) * v.norm(dim=-1, keepdim=True) + eps)
    return torch.cat([u, v, (u - v).abs(), scaled_product], dim=-1)


@register_head("relational")
class RelationalHead(SiameseHead):
    """features → shared Linear + LeakyReLU (one per ``group``, shared by every task naming it) →
    dropout → this task's linear output."""

    def __init__(self, spec: TaskSpec, context: HeadContext, dropout: float = 0.1, pooling: str = "pooler",
                 group: str = "pairs", hidden: int = 0, negative_slope: float = 0.01, eps: float = 1e-8):
        super().__init__(spec, context, dropout, pooling)
        self.group, self.negative_slope, self.eps = group, negative_slope, eps
        self.hidden = hidden or context.hidden_size
        key = f"relational_{group}"
        layer = context.shared.get_or_create(key, lambda: nn.Sequential(
            nn.Linear(4 * context.hidden_size, self.hidden), nn.LeakyReLU(negative_slope)))
        if layer[0].out_features != self.hidden or layer[1].negative_slope != negative_slope:
            raise ValueError(f"task {spec.name!r}: relational group {group!r} is shared with other settings "
                             f"(hidden {layer[0].out_features}, negative_slope {layer[1].negative_slope})")
        self.shared_key = key
        self.output = nn.Linear(self.hidden, spec.output_dim)

    def options(self) -> dict:
        return {**super().options(), "group": self.group, "hidden": self.hidden,
                "negative_slope": self.negative_slope, "eps": self.eps}

    def combine(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        hidden = self.shared[self.shared_key](relational_features(u, v, self.eps))
        return self.output(self.dropout(hidden))
