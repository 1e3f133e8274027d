"""SMART (Jiang et al., ACL 2020): smoothness-inducing adversarial regularisation and Bregman proximal
point optimisation, per task.

For a batch of a SMART task the loss gains two terms:

- λ_s·R_s: the largest divergence between the model's output on the embedding layer's output x and on
  a perturbed x̃ = x + δ with ‖δ‖ ≤ ε per token (∞-norm or L2), found by K steps of projected ascent
  from δ ~ N(0, σ²): δ ← Π(δ + η·g/‖g‖), g the gradient of the divergence with respect to δ. The
  divergence is ``symmetric_kl`` for the task's kind (softmax, Bernoulli, squared error).
- μ·ℓ_s(f(x; θ), f(x; θ̃)): the proximal term towards a teacher θ̃ that follows the weights by an
  exponential moving average, θ̃ ← (1 − β)·θ + β·θ̃ after every update, β = 0.99 for the first 10% of
  updates and 0.999 after (configurable).

Dropout is off in the adversarial passes by default (report 004): the reference output f(x) and the
perturbed ones are computed in eval mode, so that R_s → 0 as ε, σ → 0; with two dropout masks the
divergence would not vanish. The reference is detached: R_s's gradient reaches the parameters through
the perturbed pass (the embedding layer included). A non-finite ascent gradient skips R_s for that
batch with a counted warning.

The proximal term compares student and teacher in the same regime, dropout off on both sides: with
dropout on the student only, the term would measure dropout noise (it is not 0 at θ = θ̃). When the
adversarial passes also run without dropout, the student's pass is the reference of R_s (one pass
fewer).

Precision (``precision: fp32``, the default): the whole regulariser (embedding output, noise, ascent
step, normalisation and projection, the reference, perturbed, student and teacher passes, and the
divergences) runs with autocast off, whatever the run's precision; the task's own loss stays in
autocast. Under bf16 autocast an ε of 1e-5 is far below bf16's resolution (~4e-3 relative): x + δ would
round back to x for most entries and to x ± 4e-3·|x| for a few, and R_s would measure rounding
instead of smoothness (30-270x its fp32 value on the same batch). ``precision: autocast`` keeps the run's
autocast for speed where ε is large enough for it.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from typing import Optional

import torch
from torch import nn

from ..config import SmartConfig
from ..multitask import Batch, MultitaskModel
from ..tasks import SymmetricKL

log = logging.getLogger("mtbert")
NORMS = ("inf", "l2")
PRECISIONS = ("fp32", "autocast")


@contextlib.contextmanager
def dropout_off(model: nn.Module):
    """Eval mode for the duration, then each module's own mode back (a frozen encoder stays in eval)."""
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for module, mode in modes.items():
            module.training = mode


def per_token_norm(x: torch.Tensor, norm: str) -> torch.Tensor:
    return x.abs().amax(-1, keepdim=True) if norm == "inf" else x.norm(dim=-1, keepdim=True)


def project(delta: torch.Tensor, epsilon: float, norm: str) -> torch.Tensor:
    """Back into the ε-ball of each token: clamp for ∞-norm, rescale for L2."""
    if norm == "inf":
        return delta.clamp(-epsilon, epsilon)
    return delta * (epsilon / per_token_norm(delta, norm).clamp_min(epsilon)).clamp(max=1.0)


ASCENT_SCOPES = ("token", "batch")


def ascent_direction(grad: torch.Tensor, norm: str, scope: str = "token") -> torch.Tensor:
    """The gradient over its norm: each token's own (SMART), or one norm over the whole batch's
    gradient (``batch``, report 004's Algorithm 1), which keeps the tokens' relative sizes."""
    if scope == "batch":
        whole = grad.abs().amax() if norm == "inf" else grad.norm()
        return grad / whole.clamp_min(1e-30)
    return grad / per_token_norm(grad, norm).clamp_min(1e-30)


class Smart:
    def __init__(self, config: SmartConfig, model: MultitaskModel, total_updates: int, counters: dict):
        if config.norm not in NORMS:
            raise ValueError(f"train.smart.norm must be one of {', '.join(NORMS)}, not {config.norm!r}")
        if config.ascent_scope not in ASCENT_SCOPES:
            raise ValueError(f"train.smart.ascent_scope must be one of {', '.join(ASCENT_SCOPES)}, "
                             f"not {config.ascent_scope!r}")
        if config.precision not in PRECISIONS:
            raise ValueError(f"train.smart.precision must be one of {', '.join(PRECISIONS)}, not {config.precision!r}")
        unknown = sorted((set(config.tasks) | set(config.task_weights)) - set(model.specs))
        if unknown:
            raise ValueError(f"train.smart names {', '.join(unknown)}, not tasks of the model ({', '.join(model.specs)})")
        self.config, self.total_updates, self.counters = config, total_updates, counters
        self.tasks = list(config.tasks) or list(model.specs)
        self.kinds = {task: spec.kind for task, spec in model.specs.items()}
        self.divergence = SymmetricKL()
        self.teacher: Optional[MultitaskModel] = None
        if config.proximal:
            self.teacher = copy.deepcopy(model, memo={id(model.tokenizer): model.tokenizer}).eval()
            self.teacher.requires_grad_(False)
        self.updates = 0
        self.last_delta: Optional[torch.Tensor] = None  # the last perturbation, for inspection
        counters.setdefault("smart_skipped", 0)

    # ----- the two terms ------------------------------------------------------------------
    def _precision(self, batch: Batch):
        """Autocast off for the regulariser (``precision: fp32``), or the run's own."""
        if self.config.precision == "autocast":
            return contextlib.nullcontext()
        return torch.autocast(batch.input_ids.device.type, enabled=False)

    def adversarial_loss(self, model: MultitaskModel, batch: Batch,
                         reference: Optional[torch.Tensor] = None) -> Optional[torch.Tensor]:
        """R_s for the batch, or None when the ascent gradient was not finite. ``reference``: f(x) in the
        adversarial passes' regime, when the caller has it already."""
        config, kind = self.config, self.kinds[batch.task]
        mode = contextlib.nullcontext() if config.adversarial_dropout else dropout_off(model)
        with mode, self._precision(batch):
            embedded = model.encoder.embed(batch.input_ids, batch.token_type_ids)
            if config.precision == "fp32":
                embedded = embedded.float()
            if reference is None:
                with torch.no_grad():
                    reference = model(batch, embedded.detach()).scores.float()
            delta = torch.randn(embedded.shape, dtype=torch.float32, device=embedded.device) * config.sigma
            for _ in range(config.steps):
                delta.requires_grad_(True)
                noisy = model(batch, embedded.detach() + delta).scores
                (grad,) = torch.autograd.grad(self.divergence(noisy, reference, kind), delta)
                if not torch.isfinite(grad).all():
                    self.counters["smart_skipped"] += 1
                    log.warning("SMART: non-finite adversarial gradient on %s, regulariser skipped for this batch "
                                "(%d so far)", batch.task, self.counters["smart_skipped"])
                    return None
                delta = project(delta.detach() + config.step_size * ascent_direction(grad.float(), config.norm,
                                                                                      config.ascent_scope),
                                config.epsilon, config.norm)
            self.last_delta = delta.detach()
            adversarial = model(batch, embedded + self.last_delta).scores
            return self.divergence(adversarial, reference, kind)

    def proximal_loss(self, model: MultitaskModel, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(ℓ_s(f(x; θ), f(x; θ̃)), the student's output f(x; θ)), both sides without dropout."""
        with dropout_off(model), self._precision(batch):
            student = model(batch).scores.float()
            with torch.no_grad():
                teacher = self.teacher(batch).scores.float()
        return self.divergence(student, teacher, self.kinds[batch.task]), student

    def regularizer(self, model: MultitaskModel, batch: Batch) -> torch.Tensor:
        """λ_s·R_s + μ·proximal for a batch of a SMART task."""
        config = self.config
        total = torch.zeros((), dtype=torch.float32, device=batch.input_ids.device)
        weight = config.task_weights.get(batch.task, config.weight)
        student = None
        if self.teacher is not None and config.proximal_weight:
            proximal, student = self.proximal_loss(model, batch)
            total = total + config.proximal_weight * proximal
        if weight:
            shared = student.detach() if student is not None and not config.adversarial_dropout else None
            adversarial = self.adversarial_loss(model, batch, reference=shared)
            if adversarial is not None:
                total = total + weight * adversarial
        return total

    # ----- the teacher --------------------------------------------------------------------
    def beta(self) -> float:
        config = self.config
        return config.beta if self.updates < config.beta_warmup * self.total_updates else config.beta_late

    @torch.no_grad()
    def after_update(self, model: MultitaskModel) -> None:
        """θ̃ ← (1 − β)·θ + β·θ̃, after every optimizer update."""
        if self.teacher is not None:
            beta = self.beta()
            teacher = list(self.teacher.parameters())
            torch._foreach_lerp_(teacher, [p.detach() for p in model.parameters()], 1.0 - beta)
        self.updates += 1

    def state_dict(self) -> dict:
        return {"updates": self.updates, "teacher": self.teacher.state_dict() if self.teacher is not None else {}}

    def load_state_dict(self, state: dict) -> None:
        self.updates = state["updates"]
        if self.teacher is not None:
            self.teacher.load_state_dict(state["teacher"])
