"""Projected attention layers, PALs (Stickland & Murray 2019; report 001's background).

A task-specific path runs in parallel with each layer's self-attention and is added before the
layer's first LayerNorm:  h ← LN(h + SA(h) + V_D·g(V_E·h)).  V_E projects the hidden vector down to
``size`` units, g is multi-head self-attention in that small space (with the same padding mask), and
V_D projects back. As in the paper, V_E and V_D are shared by all layers of a task
(``share_projections``) while each layer has its own g. V_D starts at zero, so the path adds nothing
at initialisation.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..bert import BertConfig, BertModel
from .base import PeftMethod, chosen_layers, register_peft_method


class SmallAttention(nn.Module):
    """g: multi-head self-attention inside the projected space."""

    def __init__(self, size: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(size, 3 * size)
        self.out = nn.Linear(size, size)

    def forward(self, hidden: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        batch, length, size = hidden.shape
        qkv = self.qkv(hidden).view(batch, length, 3, self.heads, size // self.heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        context = F.scaled_dot_product_attention(query, key, value, attn_mask=mask)
        return self.out(context.transpose(1, 2).reshape(batch, length, size))


@register_peft_method("pals")
class ProjectedAttentionLayers(PeftMethod):
    def __init__(self, config: BertConfig, tasks, size: int = 204, heads: int = 12,
                 share_projections: bool = True, layers: Optional[list[int]] = None, per_task: bool = True):
        if size < 1 or heads < 1 or size % heads:
            raise ValueError(f"pals size ({size}) must be a positive multiple of heads ({heads})")
        self.size, self.heads, self.share_projections = size, heads, share_projections
        self.layers = chosen_layers(config.num_hidden_layers, layers)
        super().__init__(config, tasks, per_task)

    def build_set(self, config: BertConfig) -> nn.ModuleDict:
        """``encode``/``decode`` once (shared by the layers) or per layer (``layer<i>_encode``), and g per layer."""
        modules: dict[str, nn.Module] = {}
        prefixes = [""] if self.share_projections else [f"layer{i}_" for i in self.layers]
        for prefix in prefixes:
            encode = nn.Linear(config.hidden_size, self.size, bias=False)
            decode = nn.Linear(self.size, config.hidden_size, bias=False)
            nn.init.normal_(encode.weight, std=config.initializer_range)
            nn.init.zeros_(decode.weight)
            modules[f"{prefix}encode"], modules[f"{prefix}decode"] = encode, decode
        for i in self.layers:
            modules[f"layer{i}"] = SmallAttention(self.size, self.heads)
        return nn.ModuleDict(modules)

    def sites(self, encoder: BertModel) -> list[tuple[str, nn.Module]]:
        return [(f"layer{i}", encoder.layers[i].attention) for i in self.layers]

    def transform(self, modules: nn.ModuleDict, site: str, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        hidden, mask = inputs
        prefix = "" if self.share_projections else f"{site}_"
        path = modules[f"{prefix}decode"](modules[site](modules[f"{prefix}encode"](hidden), mask))
        return output + path

    def settings(self) -> dict:
        return {"size": self.size, "heads": self.heads, "share_projections": self.share_projections,
                "layers": self.layers, **super().settings()}

