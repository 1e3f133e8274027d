"""The encoder's forward compiled for inference, its weights folded in as constants ("freezing").

Why: when nothing trains, the weights are constants. Inductor then casts them to bf16 once instead of
autocast casting each weight at every use, and fuses the elementwise work around the matrix products
(bias + GELU, residual + LayerNorm, the attention mask) into single loops. The matrix products are the
same kernels either way; what shrinks is everything between them (benchmarks/encoder_speed.py has the
measured rates, docs/speed.md the table).

What it costs and where it stops:
- The first batch compiles (tens of seconds on a 2-core CPU for MiniLM; inductor caches kernels on
  disk). Shapes are compiled dynamically, so evaluation's batches of many lengths share one graph
  after a recompile or two. It pays for a dev set, a corpus or a server; not for a handful of inputs.
- Only calls without gradients, in eval mode, take the compiled graph; anything else (training, a
  gradient check) runs the eager forward, so a frozen module never trains on stale constants.
- The weights are read when the graph is compiled: load new weights into a new model, not this one.
- Where compiling fails (no C++ compiler, an unsupported platform), one warning says so and every call
  runs eagerly from then on; an input the eager forward rejects raises its own error as before.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional

import torch
from torch import nn

log = logging.getLogger("mtbert")


class FrozenForward:
    """Stands in for a module's ``forward``: the compiled graph where it may serve, the eager one otherwise."""

    def __init__(self, module: nn.Module):
        self.module = module
        self.eager: Callable[..., Any] = module.forward
        self.compiled = torch.compile(self.eager, dynamic=True, options={"freezing": True})
        self.broken: Optional[str] = None  # why compiling failed, once it has
        self.calls = 0  # calls the compiled graph answered

    def __call__(self, *args, **kwargs):
        if self.broken is not None or torch.is_grad_enabled() or self.module.training:
            return self.eager(*args, **kwargs)
        try:
            result = self.compiled(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - the eager forward below re-raises what is the input's fault
            result = self.eager(*args, **kwargs)
            self.broken = f"{type(error).__name__}: {error}".splitlines()[0][:300]
            log.warning("compiled inference is off for this model (%s); running eagerly", self.broken)
            return result
        self.calls += 1
        return result


def freeze_for_inference(module: nn.Module) -> nn.Module:
    """Put ``module`` in eval mode and route its no-gradient calls through a frozen compiled graph.

    The module's parameters, state dict and saving are untouched (only its ``forward`` is replaced);
    ``is_frozen`` tells whether a module has been through here."""
    if not is_frozen(module):
        module.eval()
        module.forward = FrozenForward(module)
    return module


def is_frozen(module: nn.Module) -> bool:
    return isinstance(module.__dict__.get("forward"), FrozenForward)
