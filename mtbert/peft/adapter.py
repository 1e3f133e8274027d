"""Houlsby bottleneck adapters (Houlsby et al. 2019; report 001).

An adapter maps a hidden vector h to h + W_up·g(W_down·h + b_down) + b_up: down to ``size`` units,
a non-linearity, back up, plus the residual. By default the up-projection starts at zero, so an adapter
is the identity at initialisation and the pretrained model's outputs are unchanged until it learns (the
down-projection starts from a truncated normal with ``init_std``; a zero up-projection makes
"near-identity" exact, and its gradient is not zero, so it learns from step one). ``up_init:
trunc_normal`` draws the up-projection from the same truncated normal, as report 001 does.

Placements (``placement``, one or a list):
- ``feed_forward``: on the feed-forward block's output, before its residual and LayerNorm (Houlsby's
  second adapter; report 001's "after feed-forward");
- ``attention``: on the attention block's output projection, before its residual and LayerNorm
  (Houlsby's first adapter);
- ``layer_norm``: on the layer's output, after its final LayerNorm (report 001's "after layer norm");
- ``houlsby``: ``attention`` and ``feed_forward`` together, the original design.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..bert import BertConfig, BertModel
from ..bert.model import ACTIVATIONS
from .base import PeftMethod, chosen_layers, register_peft_method

PLACEMENTS = {
    "feed_forward": lambda layer: layer.ffn_out,
    "attention": lambda layer: layer.attention.out,
    "layer_norm": lambda layer: layer.output_norm,
}
ALIASES = {"houlsby": ["attention", "feed_forward"]}


UP_INITS = ("zero", "trunc_normal")


class Bottleneck(nn.Module):
    """``up_init``: ``zero`` (the adapter starts as the identity) or ``trunc_normal`` (both projections
    from the truncated normal, as report 001 initialises W_E and W_D: near the identity, not at it)."""

    def __init__(self, width: int, size: int, activation: str, init_std: float, up_init: str = "zero"):
        super().__init__()
        self.down = nn.Linear(width, size)
        self.up = nn.Linear(size, width)
        self.activation = ACTIVATIONS[activation]
        nn.init.trunc_normal_(self.down.weight, std=init_std, a=-2 * init_std, b=2 * init_std)
        nn.init.zeros_(self.down.bias)
        if up_init == "trunc_normal":
            nn.init.trunc_normal_(self.up.weight, std=init_std, a=-2 * init_std, b=2 * init_std)
        else:
            nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden + self.up(self.activation(self.down(hidden)))


@register_peft_method("adapter")
class BottleneckAdapters(PeftMethod):
    def __init__(self, config: BertConfig, tasks, size: int = 64, placement: str | list[str] = "feed_forward",
                 activation: str = "gelu", init_std: float = 1e-3, layers: Optional[list[int]] = None,
                 per_task: bool = True, up_init: str = "zero"):
        names = [placement] if isinstance(placement, str) else list(placement)
        names = [p for name in names for p in ALIASES.get(name, [name])]
        unknown = sorted(set(names) - set(PLACEMENTS))
        if unknown:
            raise ValueError(f"adapter placement {', '.join(unknown)} unknown; choose from "
                             f"{', '.join([*PLACEMENTS, *ALIASES])}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"adapter activation {activation!r} unknown; choose from {', '.join(ACTIVATIONS)}")
        if size < 1:
            raise ValueError(f"adapter size must be positive, not {size}")
        if up_init not in UP_INITS:
            raise ValueError(f"adapter up_init {up_init!r} unknown; choose from {', '.join(UP_INITS)}")
        self.up_init = up_init
        self.size, self.placements, self.activation_name, self.init_std = size, list(dict.fromkeys(names)), activation, init_std
        self.layers = chosen_layers(config.num_hidden_layers, layers)
        super().__init__(config, tasks, per_task)

    def _site_names(self) -> list[tuple[str, int, str]]:
        return [(f"layer{i}_{p}", i, p) for i in self.layers for p in self.placements]

    def build_set(self, config: BertConfig) -> nn.ModuleDict:
        return nn.ModuleDict({site: Bottleneck(config.hidden_size, self.size, self.activation_name, self.init_std,
                                                   self.up_init)
                              for site, _, _ in self._site_names()})

    def sites(self, encoder: BertModel) -> list[tuple[str, nn.Module]]:
        return [(site, PLACEMENTS[placement](encoder.layers[i])) for site, i, placement in self._site_names()]

    def transform(self, modules: nn.ModuleDict, site: str, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        return modules[site](output)

    def settings(self) -> dict:
        return {"size": self.size, "placement": self.placements, "activation": self.activation_name,
                "init_std": self.init_std, "up_init": self.up_init, "layers": self.layers, **super().settings()}
