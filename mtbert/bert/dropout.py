"""Dropout whose mask costs a sixth of ``bernoulli_`` on a CPU.

Why: profiled on a 2-core CPU in bf16, drawing dropout masks with ``bernoulli_`` (torch's CPU dropout
draws one Mersenne-Twister number per element) took a fifth of a MiniLM training step, more than the
attention products. Here each 64-bit random word gives four elements their 16-bit uniform draw: an
element is kept when its draw is at or above ``round(p·65536)`` (of 65,536), so the drop probability is
``p`` rounded to 1/65,536 (0.1 becomes 0.100006) and the kept values are scaled by 1/(1 − that), as
inverted dropout does. On CUDA, torch's fused dropout is already cheap and is used as it is.

With ``MTBERT_COMPILED_DROPOUT=1`` the same rule runs on a CPU as one compiled loop with a hashed mask
(``hashed_dropout.py``: faster and leaner for long inputs); this eager mask stays the default, and is
what remains where compiling fails and inside a graph being compiled (which traces this).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .hashed_dropout import KERNEL, hashed_dropout

STEPS = 65536  # 16-bit draws


def keep_scale(shape: torch.Size, p: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A tensor of ``shape``: 1/(1 − p') where an element is kept, 0 where it is dropped."""
    count = 1
    for size in shape:
        count *= size
    dropped = round(p * STEPS)
    words = torch.randint(-2**63, 2**63 - 1, ((count + 3) // 4,), dtype=torch.int64, device=device)
    draws = words.view(torch.int16)[:count].view(shape)  # uniform over [-32768, 32767]
    keep = draws >= (dropped - STEPS // 2)
    return keep.to(dtype).mul_(STEPS / (STEPS - dropped))


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    if not training or p == 0.0:
        return x
    dropped = round(p * STEPS)
    if x.device.type != "cpu" or dropped >= STEPS:
        return F.dropout(x, p, True)
    if dropped == 0:
        return x
    # sizes 0 and 1 would each compile a loop of their own (torch specialises them)
    if (KERNEL.broken is None and KERNEL.wanted(None, x.device) and x.numel() > 1
            and not torch.compiler.is_compiling()):
        return hashed_dropout(x, dropped, STEPS)
    return x * keep_scale(x.shape, p, x.dtype, x.device)


class Dropout(nn.Dropout):
    """``nn.Dropout`` with the cheap CPU mask (same ``p``, same state dict: none)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)
