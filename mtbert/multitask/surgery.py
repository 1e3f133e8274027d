"""Gradient surgery on the shared parameters: combine the tasks' gradients of a step so that they
conflict less. Task-specific parameters (the heads) keep their plain gradients.

Each method takes the per-task gradients of the shared parameters, flattened (one row per task), and
returns the one gradient to apply. The trainer obtains the rows with one backward per task, each on
that task's own forward graph, so nothing is retained beyond what summed-loss training keeps.
"""

from __future__ import annotations

import torch

from ..registry import Registry

GRADIENT_SURGERY: Registry[type["GradientSurgery"]] = Registry("gradient surgery")
register_surgery = GRADIENT_SURGERY.register


class GradientSurgery:
    registry_name = ""

    def __call__(self, grads: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError


@register_surgery("pcgrad")
class PCGrad(GradientSurgery):
    """PCGrad (Yu et al. 2020): for each task, in a random order of the others, when its gradient
    conflicts with another's (negative dot product) remove the component along that other gradient;
    sum the projected gradients. Agreeing gradients are left alone."""

    def __call__(self, grads: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        projected = grads.clone()
        count = len(grads)
        norms = (grads * grads).sum(1)
        for i in range(count):
            for j in torch.randperm(count, generator=generator).tolist():
                if j == i or norms[j] == 0:
                    continue
                dot = projected[i] @ grads[j]
                if dot < 0:
                    projected[i] -= dot / norms[j] * grads[j]
        return projected.sum(0)


@register_surgery("cagrad")
class CAGrad(GradientSurgery):
    """Conflict-averse gradient descent (Liu et al. 2021): the update d = g0 + (√φ/‖g_w‖)·g_w, where g0 is
    the average gradient, φ = c²‖g0‖², and g_w = Σ w_i g_i with w on the simplex minimising
    g_w·g0 + √φ‖g_w‖; returned times the number of tasks so its scale matches a summed loss, divided
    by (1 + c²) as in the authors' rescaling. The k-dimensional problem is solved on the Gram matrix."""

    def __init__(self, c: float = 0.5, iterations: int = 200, lr: float = 0.5):
        self.c, self.iterations, self.lr = c, iterations, lr

    def __call__(self, grads: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        count = len(grads)
        # The k-dim problem in float64 on the CPU (a few hundred tiny steps; on a GPU each would be a
        # launch); the gradients stay where and as they are.
        gram = (grads @ grads.T).double().cpu()
        g0_norm = (gram.mean() + 1e-20).sqrt()  # ‖g0‖² = mean of the Gram matrix
        sqrt_phi = self.c * g0_norm
        logits = torch.zeros(count, dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.Adam([logits], lr=self.lr)
        for _ in range(self.iterations):
            w = torch.softmax(logits, 0)
            objective = w @ gram.mean(1) + sqrt_phi * (w @ gram @ w + 1e-20).sqrt()
            optimizer.zero_grad()
            objective.backward()
            optimizer.step()
        w = torch.softmax(logits.detach(), 0)
        gw = w.to(grads.device, grads.dtype) @ grads
        g0 = grads.mean(0)
        direction = g0 + float(sqrt_phi) / (float(gw.norm()) + 1e-20) * gw
        return count * direction / (1 + self.c ** 2)


def build_surgery(name: str, options: dict | None = None) -> GradientSurgery | None:
    if name in ("", "none"):
        return None
    try:
        return GRADIENT_SURGERY.get(name)(**(options or {}))
    except TypeError as error:
        raise ValueError(f"gradient surgery {name!r}: bad train.surgery_options {options!r} ({error})") from None
