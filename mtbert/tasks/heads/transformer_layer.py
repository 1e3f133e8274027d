"""Report 003's head: one extra transformer layer per task over the shared encoder's token states."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ...bert import EncoderOutput
from ...bert.model import BertLayer, attention_mask_for_sdpa
from ..spec import TaskSpec
from .base import HeadContext, HeadOutput, TaskHead, masked_mean, register_head


@register_head("transformer_layer")
class TransformerLayerHead(TaskHead):
    """A BERT layer of its own (the encoder's shape, freshly initialised) over the last hidden states,
    mean-pooled and concatenated with the sentence vector (the pooler output by default), then
    dropout → linear → GELU → dropout → projection. Sentences and pairs are both encoded jointly."""

    def __init__(self, spec: TaskSpec, context: HeadContext, dropout: float = 0.1, pooling: str = "pooler",
                 hidden: int = 0):
        super().__init__(spec, context, dropout, pooling)
        self.layer = BertLayer(context.encoder_config)
        for module in self.layer.modules():  # BERT's initialisation, as the encoder's own layers had
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=context.encoder_config.initializer_range)
                nn.init.zeros_(module.bias)
        self.hidden = hidden or 2 * context.hidden_size
        self.feed_forward = nn.Linear(2 * context.hidden_size, self.hidden)
        self.activation = nn.GELU()
        self.output = nn.Linear(self.hidden, spec.output_dim)

    def options(self) -> dict:
        return {**super().options(), "hidden": self.hidden}

    def forward(self, outputs: Sequence[EncoderOutput], masks: Sequence[torch.Tensor]) -> HeadOutput:
        output, mask = outputs[0], masks[0]
        states = self.layer(output.last_hidden_state, attention_mask_for_sdpa(mask))
        features = torch.cat([masked_mean(states, mask), self.sentence_vector(output, mask)], dim=-1)
        hidden = self.activation(self.feed_forward(self.dropout(features)))
        return HeadOutput(self.finish(self.output(self.dropout(hidden))))
