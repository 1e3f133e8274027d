"""Task heads: what turns encoder states into a task's output. One class each, registered by name.

A head says how its inputs are encoded (``encoding``): ``"joint"`` puts a sentence, or both sentences
of a pair, in one input ([CLS] a [SEP] b [SEP]); ``"separate"`` encodes each sentence alone with the
shared encoder (Siamese). The model encodes accordingly and hands the head one encoder output per
segment together with the segments' attention masks.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from ..bert import EncoderOutput
from ..registry import Registry
from .spec import TaskSpec

HEADS: Registry[type["TaskHead"]] = Registry("head")
POOLINGS: Registry[Callable[[EncoderOutput, torch.Tensor], torch.Tensor]] = Registry("pooling")
register_head = HEADS.register
register_pooling = POOLINGS.register


@register_pooling("pooler")
def pooler_vector(output: EncoderOutput, mask: torch.Tensor) -> torch.Tensor:
    return output.pooler_output


@register_pooling("cls")
def cls_vector(output: EncoderOutput, mask: torch.Tensor) -> torch.Tensor:
    return output.last_hidden_state[:, 0]


@register_pooling("mean")
def mean_vector(output: EncoderOutput, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(output.last_hidden_state.dtype)
    return (output.last_hidden_state * weights).sum(1) / weights.sum(1).clamp_min(1.0)


class TaskHead(nn.Module):
    """Base class. Subclasses set ``encoding`` and implement ``forward``."""

    registry_name = ""
    encoding = "joint"
    pair_only = False

    def __init__(self, spec: TaskSpec, hidden_size: int, dropout: float = 0.1, pooling: str = "pooler"):
        super().__init__()
        if self.pair_only and not spec.is_pair:
            raise ValueError(f"head {self.registry_name!r} needs a sentence-pair task; {spec.name!r} has one text")
        self.spec = spec
        self.pooling = pooling
        self.pool = POOLINGS.get(pooling)
        self.dropout = nn.Dropout(dropout)

    def options(self) -> dict:
        """The constructor options needed to rebuild this head from a saved model."""
        return {"dropout": self.dropout.p, "pooling": self.pooling}

    def finish(self, output: torch.Tensor) -> torch.Tensor:
        """(batch, 1) becomes (batch,) for binary and regression tasks."""
        return output.squeeze(-1) if self.spec.output_dim == 1 else output

    def forward(self, outputs: Sequence[EncoderOutput], masks: Sequence[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError


@register_head("linear")
class LinearHead(TaskHead):
    """dropout → linear over one sentence vector (pooler output, [CLS] state or mean of tokens)."""

    def __init__(self, spec: TaskSpec, hidden_size: int, dropout: float = 0.1, pooling: str = "pooler"):
        super().__init__(spec, hidden_size, dropout, pooling)
        self.output = nn.Linear(hidden_size, spec.output_dim)

    def forward(self, outputs: Sequence[EncoderOutput], masks: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.finish(self.output(self.dropout(self.pool(outputs[0], masks[0]))))


@register_head("cross_encoder")
class PairCrossEncoderHead(LinearHead):
    """Both sentences in one input with token types 0/1, a linear layer over the joint vector."""

    pair_only = True


def build_head(name: str, spec: TaskSpec, hidden_size: int, **options) -> TaskHead:
    return HEADS.get(name)(spec, hidden_size, **options)


def default_head_name(spec: TaskSpec) -> str:
    return "cross_encoder" if spec.is_pair else "linear"
