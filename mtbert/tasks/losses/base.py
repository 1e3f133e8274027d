"""What every loss shares: the registry, the loss roles, and building a task's loss from the config.

Three roles, one registry: a ``label`` loss compares a head's output with the labels (a task's
training loss); a ``divergence`` compares two outputs of the model on the same inputs (SMART,
consistency); a ``penalty`` is a function of the parameters alone (an explicit L2 term).
"""

from __future__ import annotations

import inspect
from typing import Optional, Sequence

import torch

from ...registry import Registry, check_options
from ..heads import HeadOutput
from ..spec import KINDS, TaskSpec

LOSSES: Registry[type["Loss"]] = Registry("loss")
register_loss = LOSSES.register
DEFAULT_LOSS = {"classification": "cross_entropy", "binary": "bce", "regression": "mse"}


class Loss:
    """Base class. ``role`` says what the loss compares; ``kinds`` which task kinds it serves."""

    registry_name = ""
    role = "label"
    kinds: tuple[str, ...] = KINDS
    needs_vectors = False  # needs the Siamese sentence vectors (HeadOutput.vectors)

    def __init__(self, spec: Optional[TaskSpec] = None):
        self.spec = spec

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.registry_name})"


class LabelLoss(Loss):
    def __call__(self, output: HeadOutput, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class SumOfLosses(LabelLoss):
    """Several label losses on one task, added (``loss: bce+mnr`` in a config)."""

    def __init__(self, parts: Sequence[LabelLoss]):
        super().__init__(parts[0].spec)
        self.parts = list(parts)

    def __call__(self, output: HeadOutput, labels: torch.Tensor) -> torch.Tensor:
        return sum(part(output, labels) for part in self.parts)

    def __repr__(self) -> str:
        return "+".join(part.registry_name for part in self.parts)


def positive_mask(labels: torch.Tensor, spec: TaskSpec, threshold: Optional[float]) -> torch.Tensor:
    """Which pairs count as positives: label 1 for a binary task; label ≥ threshold (default the middle
    of the range) for a regression task."""
    if spec.kind == "binary":
        return labels > 0.5
    if threshold is None:
        threshold = sum(spec.label_range) / 2
    return labels >= threshold


def build_task_loss(spec: TaskSpec, names: str, options: Optional[dict] = None, *, provides_vectors: bool = False,
                    train_labels: Optional[torch.Tensor] = None) -> LabelLoss:
    """The label loss a task trains with: ``names`` is one registered loss or several joined by ``+``;
    ``options`` maps a loss name to its keyword options. ``train_labels`` lets a loss look at the
    training labels (class weights ``balanced``)."""
    options = dict(options or {})
    names = names or DEFAULT_LOSS[spec.kind]
    parts = []
    for name in (n.strip() for n in names.split("+")):
        loss_class = LOSSES.get(name)
        where = f"task {spec.name!r}, loss {name!r}"
        if loss_class.role != "label":
            raise ValueError(f"{where}: a {loss_class.role} compares {'two outputs' if loss_class.role == 'divergence' else 'parameters'}, "
                             "not outputs with labels; it cannot be a task's training loss")
        if spec.kind not in loss_class.kinds:
            raise ValueError(f"{where}: serves {', '.join(loss_class.kinds)} tasks; {spec.name!r} is {spec.kind}")
        if loss_class.needs_vectors and not provides_vectors:
            raise ValueError(f"{where}: needs the two sentence vectors of a Siamese head "
                             "(siamese_concat, cosine, bilinear, relational)")
        kwargs = dict(options.pop(name, None) or {})
        check_options(loss_class, kwargs, where, supplied=("spec", "train_labels"))
        if "train_labels" in inspect.signature(loss_class.__init__).parameters:
            kwargs["train_labels"] = train_labels
        parts.append(loss_class(spec, **kwargs))
    if options:
        raise ValueError(f"task {spec.name!r}: loss_options for {', '.join(sorted(options))}, "
                         f"which the loss {names!r} does not use")
    return parts[0] if len(parts) == 1 else SumOfLosses(parts)
