"""AdamW (Loshchilov & Hutter 2019) written in the project, as the minBERT handout asks.

Updates run over whole parameter lists with torch's ``_foreach`` ops: a loop over parameters in
Python costs as much as a backward pass for a small encoder on CPU. On a CPU the large tensors go
through one compiled kernel instead (``compiled_update.py``: a third of the memory traffic).
Parameters whose step counts differ (a head that received no gradient for a while) are updated in
separate lists so that each gets its own bias correction, exactly as a per-parameter loop would.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Iterable, Optional

import torch
from torch.optim import Optimizer

from .compiled_update import COMPILED_UPDATE


class AdamW(Optimizer):
    """Adam with decoupled weight decay: p ← p − (lr·wd·p + the bias-corrected Adam step).

    Why the decay joins the Adam step instead of scaling p by (1 − lr·wd): in fp32 that factor is
    rounded before it is applied (1 − 1e-7 becomes 1 − 1.19e-7, 19% more decay than asked) and is
    exactly 1 once lr·wd < 3e-8, late in a linear decay, so the decay stops. Added to the step, lr·wd·p
    is carried with the step's own relative precision and p is rounded once."""

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        correct_bias: bool = True,
        compiled: Optional[bool] = None,
    ):
        """``compiled``: update the large tensors with the compiled kernel (None: on a CPU; see
        compiled_update.py). It is not saved with the state: a checkpoint resumes either way."""
        if lr < 0:
            raise ValueError(f"invalid learning rate {lr}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"invalid betas {betas}")
        if eps < 0:
            raise ValueError(f"invalid eps {eps}")
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, correct_bias=correct_bias)
        super().__init__(params, defaults)
        self.update_masks: dict[torch.Tensor, torch.Tensor] = {}
        self.compiled = compiled
        # Scratch tensors reused every step (not state: never saved). Allocating them anew each step cost as
        # much as the update itself on a CPU: a tensor over ~32 MB (MiniLM's word embeddings) is mapped
        # fresh from the system every time, and its pages fault in again.
        self._scratch: dict[torch.Tensor, list[torch.Tensor]] = {}

    def set_update_masks(self, masks: dict[torch.Tensor, torch.Tensor]) -> None:
        """Parameters that may change only where their mask is 1 (parameter selection). Their gradients
        are masked by the caller (hooks), which keeps the moments and the Adam step at exactly zero
        elsewhere; here the decoupled weight decay is masked as well."""
        self.update_masks = dict(masks)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            by_step: dict[int, list[torch.Tensor]] = defaultdict(list)
            for param in group["params"]:
                if param.grad is None:
                    continue
                if param.grad.is_sparse:
                    raise RuntimeError("AdamW does not support sparse gradients")
                state = self.state[param]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                state["step"] += 1
                by_step[state["step"]].append(param)
            for step, params in by_step.items():
                self._update(group, step, params)
        return loss

    def _update(self, group: dict, step: int, params: list[torch.Tensor]) -> None:
        beta1, beta2 = group["betas"]
        lr, eps, weight_decay = group["lr"], group["eps"], group["weight_decay"]
        if group["correct_bias"]:
            step_size = lr / (1.0 - beta1**step)
            root_correction = math.sqrt(1.0 - beta2**step)
        else:
            step_size, root_correction = lr, 1.0
        # m̂/(√v̂ + ε) = rc·m/(√v + rc·ε) with rc = √(1 − β₂ᵗ): one pass over the moments fewer than dividing √v
        step_size *= root_correction
        epsilon = eps * root_correction
        if COMPILED_UPDATE.wanted(self.compiled, params[0].device):
            large = [p for p in params if p not in self.update_masks and COMPILED_UPDATE.eligible(p, p.grad)]
            if large and COMPILED_UPDATE(large, [p.grad for p in large], [self.state[p]["exp_avg"] for p in large],
                                         [self.state[p]["exp_avg_sq"] for p in large],
                                         [1.0 - beta1, beta2, 1.0 - beta2, step_size, epsilon, lr * weight_decay]):
                done = {id(p) for p in large}
                params = [p for p in params if id(p) not in done]
                if not params:
                    return
        grads = [p.grad for p in params]
        exp_avgs = [self.state[p]["exp_avg"] for p in params]
        exp_avg_sqs = [self.state[p]["exp_avg_sq"] for p in params]
        torch._foreach_lerp_(exp_avgs, grads, 1.0 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1.0 - beta2)
        denominators = self.scratch(params, 0)
        for exp_avg_sq, denominator in zip(exp_avg_sqs, denominators):
            torch.sqrt(exp_avg_sq, out=denominator)
        torch._foreach_add_(denominators, epsilon)
        if not weight_decay:
            torch._foreach_addcdiv_(params, exp_avgs, denominators, -step_size)
            return
        # the step u = lr·wd·p (masked by a parameter selection) + step_size·m/(√v + ε); then p ← p − u
        steps = self.scratch(params, 1)
        for param, step in zip(params, steps):
            torch.mul(param, lr * weight_decay, out=step)
        masked = [i for i, p in enumerate(params) if p in self.update_masks]
        if masked:
            torch._foreach_mul_([steps[i] for i in masked], [self.update_masks[params[i]] for i in masked])
        torch._foreach_addcdiv_(steps, exp_avgs, denominators, step_size)
        torch._foreach_sub_(params, steps)

    def scratch(self, params: list[torch.Tensor], slot: int) -> list[torch.Tensor]:
        """Tensor ``slot`` (0: denominators, 1: steps) of each parameter's scratch, made on first use."""
        out = []
        for param in params:
            buffers = self._scratch.setdefault(param, [])
            while len(buffers) <= slot:
                buffers.append(torch.empty_like(param, memory_format=torch.preserve_format))
            out.append(buffers[slot])
        return out
