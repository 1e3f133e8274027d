"""Examples → token ids (Features) → padded tensors (Batches).

Each example becomes one segment (``joint`` encoding: a sentence, or a pair in one input) or one
segment per sentence (``separate`` encoding, for Siamese heads). Batches are padded to their own
longest segment, never to a fixed length.

Pair tasks whose sentence order carries no meaning (Quora: is b a duplicate of a) can also keep each
pair in the other order (``swapped``): training then shows each pair in a random order, and
prediction can average both orders (see ``MultitaskModel.pair_order``).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Optional, Sequence

import torch

from ..bert import BertTokenizer
from ..tasks import Example, TaskSpec

Segment = tuple[list[int], list[int]]  # (input_ids, token_type_ids)


@dataclasses.dataclass
class TaskFeatures:
    spec: TaskSpec
    examples: list[Example]
    segments: list[list[Segment]]      # per example, one (joint) or two (separate) segments
    labels: Optional[torch.Tensor]      # None for unlabelled (test) data
    swapped: Optional[list[list[Segment]]] = None  # per example, the pair in the other order (or None)

    def __len__(self) -> int:
        return len(self.examples)

    @functools.cached_property
    def lengths(self) -> list[int]:
        """Tokens per example after padding its segments to a common length (what a batch pays for)."""
        return [max(len(ids) for ids, _ in parts) * len(parts) for parts in self.segments]

    def oriented(self, swap: Sequence[bool]) -> "TaskFeatures":
        """The same examples, each pair in the other order where ``swap`` says so (labels unchanged)."""
        if self.swapped is None:
            raise ValueError(f"{self.spec.name}: these features hold one order of each pair only")
        if len(swap) != len(self):
            raise ValueError(f"{self.spec.name}: {len(swap)} order flags for {len(self)} examples")
        segments = [other if flip else own for own, other, flip in zip(self.segments, self.swapped, swap)]
        return dataclasses.replace(self, segments=segments, swapped=None)


@dataclasses.dataclass
class Batch:
    task: str
    input_ids: torch.Tensor        # (segments * batch, length); segments stacked along the batch axis
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor
    num_segments: int
    labels: Optional[torch.Tensor]
    indices: list[int]

    @property
    def size(self) -> int:
        return len(self.indices)

    @property
    def real_tokens(self) -> int:
        return int(self.attention_mask.sum())

    @property
    def padded_tokens(self) -> int:
        return self.attention_mask.numel()

    def to(self, device: torch.device) -> "Batch":
        move = lambda t: t.to(device, non_blocking=True) if t is not None else None  # noqa: E731
        return dataclasses.replace(
            self, input_ids=move(self.input_ids), attention_mask=move(self.attention_mask),
            token_type_ids=move(self.token_type_ids), labels=move(self.labels),
        )


def _segments(tokenizer: BertTokenizer, spec: TaskSpec, examples: list[Example], encoding: str,
              max_length: int, columns: Sequence[int]) -> list[list[Segment]]:
    """Each example's segments, its texts taken in the order of ``columns``."""
    if encoding == "joint":
        pairs = [e.texts[columns[1]] for e in examples] if spec.is_pair else None
        encoded = tokenizer.encode_ids([e.texts[columns[0]] for e in examples], pairs, max_length)
        return [[s] for s in encoded]
    if encoding == "separate":
        encoded = [tokenizer.encode_ids([e.texts[i] for e in examples], None, max_length) for i in columns]
        return [list(parts) for parts in zip(*encoded)]
    raise ValueError(f"unknown encoding {encoding!r}")


def featurize(tokenizer: BertTokenizer, spec: TaskSpec, examples: Sequence[Example], encoding: str,
              max_length: int, both_orders: bool = False) -> TaskFeatures:
    """Tokenize every example of one task split once, up front; with ``both_orders`` (pair tasks),
    each pair in the other order too."""
    examples = list(examples)
    if both_orders and not spec.is_pair:
        raise ValueError(f"{spec.name}: one text per example, no sentence order to swap")
    columns = list(range(len(spec.text_columns)))
    segments = _segments(tokenizer, spec, examples, encoding, max_length, columns)
    swapped = _segments(tokenizer, spec, examples, encoding, max_length, columns[::-1]) if both_orders else None
    labelled = bool(examples) and all(e.label is not None for e in examples)
    labels = None
    if labelled:
        dtype = torch.long if spec.kind == "classification" else torch.float32
        labels = torch.tensor([e.label for e in examples], dtype=dtype)
    return TaskFeatures(spec, examples, segments, labels, swapped)


def collate(features: TaskFeatures, indices: Sequence[int], pad_id: int = 0) -> Batch:
    """Pad the chosen examples' segments to their longest one and stack segments along the batch axis."""
    indices = list(indices)
    num_segments = len(features.segments[indices[0]])
    length = max(len(ids) for i in indices for ids, _ in features.segments[i])
    count = num_segments * len(indices)
    input_ids = torch.full((count, length), pad_id, dtype=torch.long)
    token_types = torch.zeros((count, length), dtype=torch.long)
    mask = torch.zeros((count, length), dtype=torch.long)
    for segment in range(num_segments):
        for row, index in enumerate(indices):
            ids, types = features.segments[index][segment]
            target = segment * len(indices) + row
            input_ids[target, : len(ids)] = torch.tensor(ids)
            token_types[target, : len(ids)] = torch.tensor(types)
            mask[target, : len(ids)] = 1
    labels = features.labels[indices] if features.labels is not None else None
    return Batch(features.spec.name, input_ids, mask, token_types, num_segments, labels, indices)
