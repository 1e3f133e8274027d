"""LHUC, learning hidden unit contributions (Swietojanski & Renals 2014; report 001).

Each hidden unit of each layer's output is scaled by 2·sigmoid(a), with one ``a`` per unit, per
layer and per task. The scale lies in (0, 2) and starts at exactly 1 (a = 0): the model is unchanged
at initialisation, and a task can damp or amplify units with a handful of parameters
(hidden size × layers per task).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..bert import BertConfig, BertModel
from .base import PeftMethod, chosen_layers, register_peft_method


class UnitScale(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.amplitude = nn.Parameter(torch.zeros(width))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden * (2.0 * torch.sigmoid(self.amplitude)).to(hidden.dtype)


@register_peft_method("lhuc")
class LearnedUnitContributions(PeftMethod):
    def __init__(self, config: BertConfig, tasks, layers: Optional[list[int]] = None, per_task: bool = True):
        self.layers = chosen_layers(config.num_hidden_layers, layers)
        super().__init__(config, tasks, per_task)

    def build_set(self, config: BertConfig) -> nn.ModuleDict:
        return nn.ModuleDict({f"layer{i}": UnitScale(config.hidden_size) for i in self.layers})

    def sites(self, encoder: BertModel) -> list[tuple[str, nn.Module]]:
        return [(f"layer{i}", encoder.layers[i]) for i in self.layers]

    def transform(self, modules: nn.ModuleDict, site: str, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        return modules[site](output)

    def settings(self) -> dict:
        return {"layers": self.layers, **super().settings()}
