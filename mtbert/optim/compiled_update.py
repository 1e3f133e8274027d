"""AdamW's update of the large tensors as one compiled kernel per tensor, on a CPU.

Why: the update is bound by memory traffic. Written with ``_foreach`` ops it makes eight passes over
the parameters, gradients and moments (21 tensor reads and writes per element); one fused loop needs 7
(read p, g, m, v; write p, m, v). For all-MiniLM-L6-v2's 22.7M parameters on a 2-core CPU that is
35 ms against 7-11 ms per step, a tenth of a training step. torch.compile (inductor) writes that loop
in C++ from the elementwise arithmetic below; the arithmetic is the foreach path's, so results agree
within float tolerance (tests/test_optim.py).

What it costs and where it stops:
- The first compile takes about half a minute (a C++ compiler builds the kernels); inductor caches
  the result on disk, and later runs load it in a few seconds.
- Only tensors of at least ``LARGE`` elements go through it (the few big weight matrices carry nearly
  all the traffic); the many small ones stay on the foreach path, where their cost is launch overhead.
- Each distinct list of shapes is its own compiled graph. Past ``MAX_SIGNATURES`` of them (torch's
  recompilation limit is 8) a new list takes the foreach path instead of silently running uncompiled.
- Where compiling fails (no C++ compiler, an unsupported platform), a warning says so once and every
  update takes the foreach path from then on: the run goes on, only slower.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..compiled_kernel import CompiledKernel

LARGE = 1 << 16            # elements: smaller tensors stay on the foreach path
MAX_SIGNATURES = 6         # distinct shape lists compiled per process (torch recompiles at most 8 times)
ENVIRONMENT_SWITCH = "MTBERT_COMPILED_ADAMW"  # "0" turns the compiled path off where it would be on


def _adamw_kernel(params: list[torch.Tensor], grads: list[torch.Tensor], exp_avgs: list[torch.Tensor],
                  exp_avg_sqs: list[torch.Tensor], scalars: torch.Tensor) -> None:
    """The same arithmetic as AdamW._update's foreach path, per element:
    m ← m + (1−β₁)(g − m); v ← β₂v + (1−β₂)g²; p ← p − (lr·wd·p + s·m/(√v + ε'))."""
    one_minus_beta1, beta2, one_minus_beta2 = scalars[0], scalars[1], scalars[2]
    step_size, epsilon, decay = scalars[3], scalars[4], scalars[5]
    for param, grad, exp_avg, exp_avg_sq in zip(params, grads, exp_avgs, exp_avg_sqs):
        exp_avg.lerp_(grad, one_minus_beta1)
        exp_avg_sq.copy_(exp_avg_sq * beta2 + grad * grad * one_minus_beta2)
        param.sub_(param * decay + step_size * (exp_avg / (exp_avg_sq.sqrt() + epsilon)))


class CompiledUpdate:
    """The process-wide compiled kernel and its bookkeeping (signatures compiled, whether it works)."""

    def __init__(self):
        self.kernel = CompiledKernel(_adamw_kernel, "AdamW", "the fused update", "the slower foreach update",
                                     ENVIRONMENT_SWITCH, fullgraph=True, dynamic=False)
        self.signatures: set[tuple] = set()

    @property
    def broken(self) -> Optional[str]:
        """Why compiling failed, once it has."""
        return self.kernel.broken

    def wanted(self, setting: Optional[bool], device: torch.device) -> bool:
        """``setting`` True/False forces it; None (auto) means on a CPU, unless the environment says no."""
        return self.kernel.wanted(setting, device)

    @staticmethod
    def eligible(param: torch.Tensor, grad: torch.Tensor) -> bool:
        return (param.numel() >= LARGE and param.dtype == torch.float32 and grad.dtype == torch.float32
                and param.is_contiguous() and grad.is_contiguous() and not grad.is_sparse)

    def __call__(self, params, grads, exp_avgs, exp_avg_sqs, scalars: list[float]) -> bool:
        """Update the tensors in place and return True, or return False (nothing touched): the caller
        then runs the foreach path on them."""
        if self.broken is not None:
            return False
        signature = tuple((tuple(p.shape), p.device.type) for p in params)
        if signature not in self.signatures:
            if len(self.signatures) >= MAX_SIGNATURES:
                return False
            self.signatures.add(signature)
        values = torch.tensor(scalars, dtype=torch.float32, device=params[0].device)
        updated, _ = self.kernel(params, grads, exp_avgs, exp_avg_sqs, values)
        return updated


COMPILED_UPDATE = CompiledUpdate()
