"""Parameter selection: train only a chosen subset of the encoder's weights (entry by entry).

- ``sam`` (Fu et al. 2022; report 003): one pass over the training data for the initial loss
  gradient ∇ℓ(θ⁰) = Σ_batches ∂ℓ_b/∂θ (the batches' gradients summed, then squared), score
  |∇ℓ(θ⁰)_i|², then keep the top ``fraction`` — over all candidate weights at once (``per: global``)
  or the same fraction of each tensor (``per: tensor``). ``gradient_pass`` says which loss: ``tasks``
  (each task's batches in turn, its own loss, dropout off) or ``training`` (the first epoch's own steps,
  each step's balanced multitask loss with dropout on: report 003's first epoch, which computed the
  gradients of its unified loss over mixed batches without optimising).
- ``fisher``: Σ_batches (∂ℓ_b/∂θ_i)², the squares summed over batches (a batch-level empirical Fisher
  diagonal, as FISH Mask scores per example): a weight whose gradient is large in some batches scores
  high even when the batches disagree in sign and the whole-data gradient is small.
- ``random``: the same number of weights drawn at random (seeded): the control SAM should beat.
- ``bitfit`` (Ben Zaken et al. 2022, named in report 003): the bias vectors only.

The candidates are the encoder weights that would train otherwise (after ``model.freeze``). A
selection is a boolean mask per candidate tensor. Training with it masks the gradients (a hook on
each parameter, before clipping and gradient surgery see them), so AdamW's moments stay exactly zero
outside the mask and its step there is exactly zero; AdamW's decoupled weight decay is masked too.
Tensors with nothing selected stop requiring gradients. Unselected weights are therefore
bit-identical after training. The masks are saved with the run (``selection.safetensors``, 1 bit per
weight) and reused on ``--resume``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterable, Optional

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from ..bert import CheckpointError
from ..registry import Registry, check_options

PER = ("global", "tensor")
SELECTION_FILE = "selection.safetensors"
Masks = dict[str, torch.Tensor]
GradientPass = Callable[[Optional[int]], Iterable[torch.Tensor]]  # one loss per training batch (at most N per task)
GRADIENT_PASSES = ("tasks", "training")


class ParameterSelection:
    registry_name = ""
    needs_gradients = False

    def select(self, candidates: dict[str, nn.Parameter], losses: Optional[GradientPass]) -> Masks:
        raise NotImplementedError


class TopFraction(ParameterSelection):
    """Keep the highest-scoring ``fraction`` of the candidate weights."""

    def __init__(self, fraction: float = 0.1, per: str = "global"):
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"selection fraction must be in (0, 1], not {fraction}")
        if per not in PER:
            raise ValueError(f"selection per must be one of {', '.join(PER)}, not {per!r}")
        self.fraction, self.per = fraction, per

    def scores(self, candidates: dict[str, nn.Parameter], losses: Optional[GradientPass]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def select(self, candidates: dict[str, nn.Parameter], losses: Optional[GradientPass]) -> Masks:
        scores = self.scores(candidates, losses)
        if self.per == "tensor":
            return {name: top_mask(score, round(self.fraction * score.numel())) for name, score in scores.items()}
        flat = torch.cat([score.reshape(-1) for score in scores.values()])
        keep = top_mask(flat, round(self.fraction * flat.numel()))
        masks, offset = {}, 0
        for name, score in scores.items():
            masks[name] = keep[offset: offset + score.numel()].view_as(score)
            offset += score.numel()
        return masks


def top_mask(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Exactly ``count`` entries True: the largest scores (ties broken by position)."""
    mask = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
    if count > 0:
        mask[torch.topk(scores.reshape(-1).float(), count, sorted=False).indices] = True
    return mask.view_as(scores)


SELECTIONS: Registry[type[ParameterSelection]] = Registry("parameter selection")


class GradientScore(TopFraction):
    """A score from one gradient pass over the training data. ``batches``: at most this many batches
    per task (``gradient_pass: tasks``) or training steps (``training``) in the pass (default: all)."""

    needs_gradients = True

    def __init__(self, fraction: float = 0.1, per: str = "global", batches: Optional[int] = None,
                 gradient_pass: str = "tasks"):
        super().__init__(fraction, per)
        if batches is not None and batches < 1:
            raise ValueError(f"{self.registry_name} batches must be positive, not {batches}")
        if gradient_pass not in GRADIENT_PASSES:
            raise ValueError(f"{self.registry_name} gradient_pass must be one of {', '.join(GRADIENT_PASSES)}, "
                             f"not {gradient_pass!r}")
        self.batches, self.gradient_pass = batches, gradient_pass

    def accumulate(self, total: torch.Tensor, grad: torch.Tensor) -> None:
        raise NotImplementedError

    def finish(self, total: torch.Tensor) -> torch.Tensor:
        return total

    def scores(self, candidates, losses):
        totals = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in candidates.items()}
        batches = 0
        for loss in losses(self.batches):
            grads = torch.autograd.grad(loss, list(candidates.values()), allow_unused=True)
            for total, grad in zip(totals.values(), grads):
                if grad is not None:
                    self.accumulate(total, grad.float())
            batches += 1
        if not batches:
            raise ValueError(f"{self.registry_name} selection: the gradient pass saw no training batches")
        return {name: self.finish(total) for name, total in totals.items()}


@SELECTIONS.register("sam")
class SecondOrderApproximation(GradientScore):
    """|∇ℓ(θ⁰)|², the whole pass's gradient squared (report 003, after Fu et al. 2022)."""

    def accumulate(self, total, grad):
        total.add_(grad)

    def finish(self, total):
        return total.square()


@SELECTIONS.register("fisher")
class SquaredBatchGradients(GradientScore):
    """Σ_b g_b², each batch's gradient squared, then summed."""

    def accumulate(self, total, grad):
        total.add_(grad.square())


@SELECTIONS.register("random")
class RandomSelection(TopFraction):
    def __init__(self, fraction: float = 0.1, per: str = "global", seed: int = 0):
        super().__init__(fraction, per)
        self.seed = seed

    def scores(self, candidates, losses):
        generator = torch.Generator().manual_seed(self.seed)
        return {name: torch.rand(p.shape, generator=generator) for name, p in candidates.items()}


@SELECTIONS.register("bitfit")
class BiasSelection(ParameterSelection):
    def select(self, candidates, losses):
        return {name: torch.full(p.shape, name.endswith("bias"), dtype=torch.bool) for name, p in candidates.items()}


def build_selection(name: str, options: Optional[dict] = None) -> ParameterSelection:
    cls = SELECTIONS.get(name)
    options = dict(options or {})
    check_options(cls, options, f"model.selection {name!r}")
    return cls(**options)


# ----- applying a selection ---------------------------------------------------------------
def apply_masks(named: dict[str, nn.Parameter], masks: Masks, optimizer) -> None:
    """Train only the masked-in entries: gradient hooks, masked weight decay, and no gradient at all
    for tensors with nothing selected."""
    decay_masks = {}
    for name, mask in masks.items():
        param = named[name]
        mask = mask.to(param.device)
        if not bool(mask.any()):
            param.requires_grad_(False)
            continue
        if bool(mask.all()):
            continue
        param.register_hook(_masker(mask))
        decay_masks[param] = mask.to(param.dtype)
    set_masks = getattr(optimizer, "set_update_masks", None)
    if set_masks is not None:
        set_masks(decay_masks)
    elif decay_masks and any(group.get("weight_decay", 0.0) for group in optimizer.param_groups):
        raise ValueError("a parameter selection with weight decay needs train.optimizer: adamw "
                         "(it masks the decay as well); set train.weight_decay: 0 to use another optimizer")


def _masker(mask: torch.Tensor):
    def hook(grad: torch.Tensor) -> torch.Tensor:
        return grad * mask.to(grad.dtype)
    return hook


def selected_count(masks: Masks) -> int:
    return int(sum(int(mask.sum()) for mask in masks.values()))


# ----- storing a selection: one bit per weight ----------------------------------------------
def pack_mask(mask: torch.Tensor) -> torch.Tensor:
    bits = mask.reshape(-1).to(torch.uint8).cpu()
    pad = (-bits.numel()) % 8
    bits = torch.cat([bits, bits.new_zeros(pad)]).view(-1, 8)
    weights = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)
    return (bits * weights).sum(dim=1, dtype=torch.uint8) if bits.numel() else bits.new_zeros(0)


def unpack_mask(packed: torch.Tensor, shape: list[int]) -> torch.Tensor:
    count = 1
    for size in shape:
        count *= size
    shifts = torch.tensor([7, 6, 5, 4, 3, 2, 1, 0], dtype=torch.uint8)
    bits = (packed.view(-1, 1) >> shifts) & 1
    return bits.reshape(-1)[:count].bool().view(shape)


def write_masked_file(path: Path, tensors: dict[str, torch.Tensor], masks: Masks, prefix: str = "",
                      metadata: Optional[dict[str, str]] = None) -> None:
    """A safetensors file of ``tensors`` plus ``masks`` packed 1 bit per entry (under ``prefix``), their
    shapes in the metadata."""
    packed = {f"{prefix}{name}": pack_mask(mask) for name, mask in masks.items()}
    shapes = {name: list(mask.shape) for name, mask in masks.items()}
    save_file({**tensors, **packed}, str(path), metadata={**(metadata or {}), "mask_shapes": json.dumps(shapes)})


def read_masked_file(path: Path, prefix: str = "") -> tuple[dict[str, torch.Tensor], Masks]:
    """What ``write_masked_file`` wrote: (the other tensors, the unpacked masks)."""
    with safe_open(str(path), "pt") as handle:
        shapes = json.loads((handle.metadata() or {}).get("mask_shapes", "{}"))
    tensors = load_file(str(path))
    masks = {name: unpack_mask(tensors.pop(f"{prefix}{name}"), shape) for name, shape in shapes.items()}
    return tensors, masks


def save_selection(path: Path, masks: Masks, method: str) -> None:
    write_masked_file(path, {}, masks, metadata={"method": method})


def load_selection(path: Path, candidates: dict[str, nn.Parameter]) -> Masks:
    """The saved masks, checked against the model's candidate tensors by name and shape."""
    try:
        _, masks = read_masked_file(path)
    except Exception as error:
        raise CheckpointError(f"{path} cannot be read as a parameter selection ({error})") from error
    problems = [f"{name}: not a trainable encoder tensor" for name in masks if name not in candidates]
    problems += [f"{name}: mask {tuple(m.shape)} vs parameter {tuple(candidates[name].shape)}"
                 for name, m in masks.items() if name in candidates and m.shape != candidates[name].shape]
    problems += [f"{name}: missing" for name in candidates if name not in masks]
    if problems:
        raise CheckpointError(f"{path} does not fit this model:\n  " + "\n  ".join(problems))
    return masks
