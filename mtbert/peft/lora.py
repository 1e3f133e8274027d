"""LoRA, low-rank adaptation (Hu et al. 2021), on the encoder's linear projections.

A target projection y = W·x + b becomes y = W·x + b + (alpha / rank)·B·A·dropout(x), with A
(rank × in) from Kaiming-uniform and B (out × rank) at zero, so the model is unchanged at
initialisation. Targets: ``query``, ``key``, ``value`` (slices of the encoder's fused QKV projection,
each with its own A and B, as LoRA on separate projections would have), ``attention_output``,
``ffn_in``, ``ffn_out``. The default is query and value, as in the LoRA paper.

Why not the ``peft`` library: it needs ``transformers`` at run time (which this project keeps a
test-only reference) and would see the fused QKV projection as one matrix, so ``query`` and
``value`` could not be targeted alone; task switching would also need its adapter names kept in
step with our batches. Written here it is a forward hook and two small matrices per target.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from ..bert import BertConfig, BertModel
from .base import PeftMethod, chosen_layers, register_peft_method

QKV_PARTS = {"query": 0, "key": 1, "value": 2}
PROJECTIONS = {
    "attention_output": lambda layer: layer.attention.out,
    "ffn_in": lambda layer: layer.ffn_in,
    "ffn_out": lambda layer: layer.ffn_out,
}
TARGETS = [*QKV_PARTS, *PROJECTIONS]


class LowRankUpdate(nn.Module):
    def __init__(self, in_features: int, out_features: int, rank: int, scale: float, dropout: float):
        super().__init__()
        self.down = nn.Parameter(torch.empty(rank, in_features))
        self.up = nn.Parameter(torch.zeros(out_features, rank))
        nn.init.kaiming_uniform_(self.down, a=math.sqrt(5))
        self.scale = scale
        self.dropout = nn.Dropout(dropout)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        down = self.dropout(inputs) @ self.down.t().to(inputs.dtype)
        return (down @ self.up.t().to(down.dtype)) * self.scale


@register_peft_method("lora")
class LowRankAdaptation(PeftMethod):
    def __init__(self, config: BertConfig, tasks, rank: int = 8, alpha: float = 16.0,
                 targets: Optional[list[str]] = None, dropout: float = 0.0, layers: Optional[list[int]] = None,
                 per_task: bool = True):
        self.targets = list(dict.fromkeys(targets or ["query", "value"]))
        unknown = sorted(set(self.targets) - set(TARGETS))
        if unknown:
            raise ValueError(f"lora targets {', '.join(unknown)} unknown; choose from {', '.join(TARGETS)}")
        if rank < 1:
            raise ValueError(f"lora rank must be positive, not {rank}")
        self.rank, self.alpha, self.dropout = rank, alpha, dropout
        self.layers = chosen_layers(config.num_hidden_layers, layers)
        super().__init__(config, tasks, per_task)

    def _shape(self, config: BertConfig, target: str) -> tuple[int, int]:
        width, inner = config.hidden_size, config.intermediate_size
        return {"ffn_in": (width, inner), "ffn_out": (inner, width)}.get(target, (width, width))

    def build_set(self, config: BertConfig) -> nn.ModuleDict:
        return nn.ModuleDict({
            f"layer{i}_{target}": LowRankUpdate(*self._shape(config, target), self.rank, self.alpha / self.rank,
                                                self.dropout)
            for i in self.layers for target in self.targets})

    def sites(self, encoder: BertModel) -> list[tuple[str, nn.Module]]:
        sites = []
        for i in self.layers:
            layer = encoder.layers[i]
            if any(t in QKV_PARTS for t in self.targets):
                sites.append((f"layer{i}_qkv", layer.attention.qkv))
            sites += [(f"layer{i}_{t}", PROJECTIONS[t](layer)) for t in self.targets if t in PROJECTIONS]
        return sites

    def transform(self, modules: nn.ModuleDict, site: str, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        (hidden,) = inputs
        if not site.endswith("_qkv"):
            return output + modules[site](hidden).to(output.dtype)
        layer = site[: -len("_qkv")]
        parts = list(output.chunk(3, dim=-1))
        for target, index in QKV_PARTS.items():
            if target in self.targets:
                parts[index] = parts[index] + modules[f"{layer}_{target}"](hidden).to(output.dtype)
        return torch.cat(parts, dim=-1)

    def settings(self) -> dict:
        return {"rank": self.rank, "alpha": self.alpha, "targets": self.targets, "dropout": self.dropout,
                "layers": self.layers, **super().settings()}
