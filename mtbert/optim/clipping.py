"""Gradient-norm clipping that skips its multiply when nothing is clipped, on a CPU.

Why: ``torch.nn.utils.clip_grad_norm_`` multiplies every gradient by the clip coefficient even when the
coefficient is 1, so that a GPU never waits for the norm. That multiply reads and writes every gradient
once more per update (MiniLM: 91 MB), and the quickstart makes three updates a step. On a CPU the norm
is known before the multiply would start, so it can be left out when the coefficient is 1: multiplying
by exactly 1.0 changes no value, and a clipped update takes torch's own arithmetic, so results are the
same bit for bit. A non-finite norm takes torch's path too (it spreads the NaN as torch does).
"""

from __future__ import annotations

from typing import Iterable

import torch


def clip_grad_norm(parameters: Iterable[torch.Tensor], max_norm: float) -> torch.Tensor:
    """The total gradient 2-norm before clipping; the gradients scaled to at most ``max_norm`` as
    ``torch.nn.utils.clip_grad_norm_`` scales them."""
    parameters = [p for p in parameters if p.grad is not None]
    grads = [p.grad for p in parameters]
    if not grads:
        return torch.tensor(0.0)
    total = torch.nn.utils.get_total_norm(grads, 2.0)
    if total.device.type == "cpu" and bool(max_norm / (total + 1e-6) >= 1.0):  # torch's coefficient, unclamped
        return total
    torch.nn.utils.clip_grads_with_norm_(parameters, max_norm, total)
    return total
