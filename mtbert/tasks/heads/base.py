"""What every head shares: the registry, sentence pooling, the head's output, and layers that
several heads (or all of them) share.

A head says how its inputs are encoded (``encoding``): ``"joint"`` puts a sentence, or both sentences
of a pair, in one input ([CLS] a [SEP] b [SEP]); ``"separate"`` encodes each sentence alone with the
shared encoder (Siamese). The model encodes accordingly and hands the head one encoder output per
segment together with the segments' attention masks.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Sequence

import torch
from torch import nn

from ...bert import BertConfig, EncoderOutput
from ...registry import Registry, check_options
from ..spec import KINDS, TaskSpec

HEADS: Registry[type["TaskHead"]] = Registry("head")
POOLINGS: Registry[Callable[[EncoderOutput, torch.Tensor], torch.Tensor]] = Registry("pooling")
register_head = HEADS.register
register_pooling = POOLINGS.register


@register_pooling("pooler")
def pooler_vector(output: EncoderOutput, mask: torch.Tensor) -> torch.Tensor:
    return output.pooler_output


@register_pooling("cls")
def cls_vector(output: EncoderOutput, mask: torch.Tensor) -> torch.Tensor:
    return output.last_hidden_state[:, 0]


def masked_mean(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of token states over the real (mask = 1) positions."""
    weights = mask.unsqueeze(-1).to(states.dtype)
    return (states * weights).sum(1) / weights.sum(1).clamp_min(1.0)


@register_pooling("mean")
def mean_vector(output: EncoderOutput, mask: torch.Tensor) -> torch.Tensor:
    return masked_mean(output.last_hidden_state, mask)


@dataclasses.dataclass
class HeadOutput:
    """A head's raw output (``scores``: logits, one logit, or a score) and, for Siamese heads, the two
    sentence vectors, which contrastive losses (multiple-negatives ranking, cosine embedding) need."""

    scores: torch.Tensor
    vectors: Optional[tuple[torch.Tensor, torch.Tensor]] = None


class SharedLayers(nn.ModuleDict):
    """Layers owned by the model and used by several heads: the shared hidden layer before every head
    (report 002's weight sharing) and relational layers shared by related pair tasks (004).

    Heads look their shared layers up here instead of owning them, so each parameter is stored once."""

    SENTENCE = "sentence"

    def get_or_create(self, key: str, factory: Callable[[], nn.Module]) -> nn.Module:
        if key not in self:
            self[key] = factory()
        return self[key]


@dataclasses.dataclass
class HeadContext:
    """What a head may know about the model it sits on."""

    encoder_config: BertConfig
    shared: SharedLayers

    @property
    def hidden_size(self) -> int:
        return self.encoder_config.hidden_size


class TaskHead(nn.Module):
    """Base class. Subclasses set ``encoding``, ``pair_only`` and ``kinds`` and implement ``forward``."""

    registry_name = ""
    encoding = "joint"
    pair_only = False
    kinds: tuple[str, ...] = KINDS
    provides_vectors = False  # True when forward returns the two sentence vectors

    def __init__(self, spec: TaskSpec, context: HeadContext, dropout: float = 0.1, pooling: str = "pooler"):
        super().__init__()
        if self.pair_only and not spec.is_pair:
            raise ValueError(f"head {self.registry_name!r} needs a sentence-pair task; {spec.name!r} has one text")
        if spec.kind not in self.kinds:
            raise ValueError(f"head {self.registry_name!r} serves {', '.join(self.kinds)} tasks; "
                             f"{spec.name!r} is {spec.kind}")
        self.spec = spec
        self.pooling = pooling
        self.pool = POOLINGS.get(pooling)
        self.dropout = nn.Dropout(dropout)
        object.__setattr__(self, "shared", context.shared)  # owned by the model, not registered here

    def options(self) -> dict:
        """The constructor options needed to rebuild this head from a saved model."""
        return {"dropout": self.dropout.p, "pooling": self.pooling}

    def sentence_vector(self, output: EncoderOutput, mask: torch.Tensor) -> torch.Tensor:
        """The pooled sentence vector, through the model's shared hidden layer when it has one."""
        vector = self.pool(output, mask)
        if SharedLayers.SENTENCE in self.shared:
            vector = self.shared[SharedLayers.SENTENCE](vector)
        return vector

    def finish(self, output: torch.Tensor) -> torch.Tensor:
        """(batch, 1) becomes (batch,) for binary and regression tasks."""
        return output.squeeze(-1) if self.spec.output_dim == 1 else output

    def forward(self, outputs: Sequence[EncoderOutput], masks: Sequence[torch.Tensor]) -> HeadOutput:
        raise NotImplementedError


class SiameseHead(TaskHead):
    """Each sentence of the pair is encoded alone by the shared encoder; subclasses combine u and v."""

    encoding = "separate"
    pair_only = True
    provides_vectors = True

    def pair_vectors(self, outputs: Sequence[EncoderOutput], masks: Sequence[torch.Tensor]):
        return self.sentence_vector(outputs[0], masks[0]), self.sentence_vector(outputs[1], masks[1])

    def combine(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, outputs: Sequence[EncoderOutput], masks: Sequence[torch.Tensor]) -> HeadOutput:
        u, v = self.pair_vectors(outputs, masks)
        return HeadOutput(self.finish(self.combine(u, v)), (u, v))


def build_head(name: str, spec: TaskSpec, context: HeadContext, **options) -> TaskHead:
    """Build a registered head, naming the options it accepts when given one it does not."""
    head_class = HEADS.get(name)
    check_options(head_class, options, f"task {spec.name!r}: head {name!r}", supplied=("spec", "context"))
    return head_class(spec, context, **options)


def default_head_name(spec: TaskSpec) -> str:
    return "cross_encoder" if spec.is_pair else "linear"
