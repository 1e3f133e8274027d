"""Dropout on a CPU as one compiled loop, its mask a hash of each element's position (on request:
``MTBERT_COMPILED_DROPOUT=1``; why it is not the default is at ``KERNEL`` below).

Why: the eager mask (``dropout.keep_scale``) draws random words with torch's serial Mersenne Twister,
compares, casts the mask to the input's dtype, scales it and multiplies: profiled on a 2-core CPU in
bf16 that was about 9% of a MiniLM training step, most of it outside the matrix products. Here
element ``i`` of a call draws the top 16 bits of the ``(i+1)``-th output of SplitMix64 (Steele, Lea &
Flood 2014) started at a seed taken from torch's generator, one draw per call; torch.compile (inductor)
writes mask and multiply as one vectorised loop, and the backward pass computes the same mask again
from the seed instead of keeping it, which also saves a mask-sized tensor per dropout for long inputs.

The drop rule is the eager one: kept when the 16-bit draw is at or above ``round(p·65536)``, kept values
times 1/(1 − that/65536), the product rounded once in the input's dtype. A run seeded with
``torch.manual_seed`` draws the same masks again, and a resumed run goes on drawing them, since the
seeds come from torch's generator, whose state checkpoints keep.
"""

from __future__ import annotations

import torch

from ..compiled_kernel import CompiledKernel

SWITCH = "MTBERT_COMPILED_DROPOUT"  # "1": this dropout; unset or "0": the eager mask


def _signed(value: int) -> int:
    """A 64-bit constant as the int64 with the same bits (torch has no uint64 arithmetic)."""
    return value - (1 << 64) if value >= 1 << 63 else value


# SplitMix64's increment and its two mixing multipliers. They reach the compiled loop as a tensor, not as
# constants: inductor folds a constant multiplier of the element index into the loop's index arithmetic,
# where the product overflows int64, which is undefined in C++; with one thread, GCC then computed wrong
# draws for all but the first 16 elements (tests/test_dropout.py checks one and two threads).
MIXERS = torch.tensor([_signed(0x9E3779B97F4A7C15), _signed(0xBF58476D1CE4E5B9), _signed(0x94D049BB133111EB)])


def _shift_right(z: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 bit patterns (``>>`` on int64 shifts the sign in)."""
    return (z >> bits) & ((1 << (64 - bits)) - 1)


def draws(seed: torch.Tensor, count: int, device: torch.device, mixers: torch.Tensor = MIXERS) -> torch.Tensor:
    """The 16-bit draws (0..65535, int64) of elements 0..count-1 for ``seed``."""
    gamma, first, second = mixers.to(device).unbind()
    z = seed + (torch.arange(count, dtype=torch.int64, device=device) + 1) * gamma  # wraps mod 2^64
    z = (z ^ _shift_right(z, 30)) * first
    z = (z ^ _shift_right(z, 27)) * second
    return _shift_right(z ^ _shift_right(z, 31), 48)


def masked_scale(flat: torch.Tensor, seed: torch.Tensor, threshold: torch.Tensor, scale: torch.Tensor,
                 mixers: torch.Tensor = MIXERS) -> torch.Tensor:
    """``flat`` (1-D) times ``scale`` where its draw is at least ``threshold``, 0 elsewhere."""
    kept = draws(seed, flat.numel(), flat.device, mixers) >= threshold
    return torch.where(kept, flat * scale, torch.zeros((), dtype=flat.dtype, device=flat.device))


# Off unless asked for: its masks are other draws than the eager mask's, and three quickstart runs with it
# scored STS 0.854 ± 0.005 against 0.864 ± 0.001 (composite the same): until that is understood, the
# default keeps the runs the published results come from (docs/speed.md).
KERNEL = CompiledKernel(masked_scale, "dropout", "the hashed mask", "the eager mask", SWITCH, default=False,
                        dynamic=True, fullgraph=True)


def _flat(x: torch.Tensor) -> torch.Tensor:
    """``x``'s elements in order as a 1-D tensor that is not a view: compiled code guards on a view's
    base, so views of 3-D and 4-D tensors would each compile their own loop (and soon hit torch's
    recompilation limit). Only the dtype then tells calls apart."""
    x = x.detach().contiguous()
    return torch.empty(0, dtype=x.dtype, device=x.device).set_(x.untyped_storage(), x.storage_offset(), (x.numel(),))


def apply_mask(x: torch.Tensor, seed: torch.Tensor, threshold: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The mask on ``x`` through the compiled loop, or through the same arithmetic in eager ops (the
    same values, slower) on the one call where compiling turned out to fail."""
    with torch.no_grad():
        flat = _flat(x)
        compiled, out = KERNEL(flat, seed, threshold, scale, MIXERS)  # a tensor argument, not a constant
        if not compiled:
            out = masked_scale(flat, seed, threshold, scale)
    return out.view(x.shape)


class _HashedDropout(torch.autograd.Function):
    """Forward applies the mask; backward applies the same mask to the gradient, recomputed from the
    seed (the gradient of x·mask·scale is grad·mask·scale), through this function again so that a
    gradient of a gradient (``create_graph=True``) is right too."""

    @staticmethod
    def forward(ctx, x, seed, threshold, scale):
        ctx.save_for_backward(seed, threshold, scale)
        return apply_mask(x, seed, threshold, scale)

    @staticmethod
    def backward(ctx, grad):
        seed, threshold, scale = ctx.saved_tensors
        return _HashedDropout.apply(grad, seed, threshold, scale), None, None, None


def hashed_dropout(x: torch.Tensor, dropped: int, steps: int) -> torch.Tensor:
    """Inverted dropout of ``x`` dropping ``dropped`` of every ``steps`` (65,536) draws."""
    seed = torch.randint(-(1 << 63), (1 << 63) - 1, (), dtype=torch.int64)
    threshold = torch.tensor(dropped, dtype=torch.int64)
    scale = torch.tensor(steps / (steps - dropped), dtype=torch.float32)
    return _HashedDropout.apply(x, seed.to(x.device), threshold.to(x.device), scale.to(x.device))
