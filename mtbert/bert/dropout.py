"""Dropout whose mask costs a sixth of ``bernoulli_`` on a CPU.

Why: profiled on a 2-core CPU in bf16, drawing dropout masks with ``bernoulli_`` (torch's CPU dropout
draws one Mersenne-Twister number per element) took a fifth of a MiniLM training step, more than the
attention products. Here each 64-bit random word gives four elements their 16-bit uniform draw: an
element is kept when its draw is at or above ``round(p·65536)`` (of 65,536), so the drop probability is
``p`` rounded to 1/65,536 (0.1 becomes 0.100006) and the kept values are scaled by 1/(1 − that), as
inverted dropout does. On CUDA, torch's fused dropout is already cheap and is used as it is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

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
    if x.device.type != "cpu" or p >= 1.0:
        return F.dropout(x, p, True)
    return x * keep_scale(x.shape, p, x.dtype, x.device)


class Dropout(nn.Dropout):
    """``nn.Dropout`` with the cheap CPU mask (same ``p``, same state dict: none)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)
