"""Heads over one vector of the whole input: a sentence, or a pair encoded together (cross-encoder)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ...bert import EncoderOutput
from ..spec import TaskSpec
from .base import HeadContext, HeadOutput, TaskHead, register_head


@register_head("linear")
class LinearHead(TaskHead):
    """dropout → linear over one sentence vector (pooler output, [CLS] state or mean of tokens)."""

    def __init__(self, spec: TaskSpec, context: HeadContext, dropout: float = 0.1, pooling: str = "pooler"):
        super().__init__(spec, context, dropout, pooling)
        self.output = nn.Linear(context.hidden_size, spec.output_dim)

    def forward(self, outputs: Sequence[EncoderOutput], masks: Sequence[torch.Tensor]) -> HeadOutput:
        return HeadOutput(self.finish(self.output(self.dropout(self.sentence_vector(outputs[0], masks[0])))))


@register_head("cross_encoder")
class PairCrossEncoderHead(LinearHead):
    """Both sentences in one input ([CLS] a [SEP] b [SEP], token types 0/1), a linear layer over the
    joint vector (BERT's own recipe for pairs; 002 and 003 found it the strongest)."""

    pair_only = True
