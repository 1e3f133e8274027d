"""Which examples go together in a batch.

Length bucketing: shuffle, cut into buckets of ``bucket_batches`` batches, sort each bucket by
length and cut it into batches. Batches then hold examples of similar length, so dynamic padding
wastes little, while the shuffle keeps batches varied from epoch to epoch. Evaluation sorts the
whole split by length (order does not matter there).
"""

from __future__ import annotations

from typing import Sequence

import torch


def random_batches(count: int, batch_size: int, generator: torch.Generator) -> list[list[int]]:
    order = torch.randperm(count, generator=generator).tolist()
    return [order[i: i + batch_size] for i in range(0, count, batch_size)]


def bucketed_batches(lengths: Sequence[int], batch_size: int, generator: torch.Generator,
                     bucket_batches: int = 50) -> list[list[int]]:
    """Every index exactly once; batches of similar lengths, in a shuffled order."""
    order = torch.randperm(len(lengths), generator=generator).tolist()
    bucket = batch_size * max(1, bucket_batches)
    batches: list[list[int]] = []
    for start in range(0, len(order), bucket):
        chunk = sorted(order[start: start + bucket], key=lambda i: lengths[i])
        batches.extend(chunk[i: i + batch_size] for i in range(0, len(chunk), batch_size))
    shuffle = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in shuffle]


def sorted_batches(lengths: Sequence[int], batch_size: int, max_tokens: int = 0) -> list[list[int]]:
    """Evaluation batches: longest first (a memory problem shows at once), every index once.

    A batch holds at most ``batch_size`` examples and, when ``max_tokens`` > 0, at most that many padded
    tokens (its longest example's length times its size; a batch always takes at least one example).
    The token cap is what keeps padding low on small dev sets: in length order, a fixed count of 128
    examples spans many lengths among the long ones (measured on STS-B dev: 24.6% padding at 128
    examples, 8% at 2,048 tokens), while short examples still share a large batch.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for index in order:
        batch = batches[-1] if batches else None
        if (batch is None or len(batch) >= batch_size
                or (max_tokens > 0 and (len(batch) + 1) * lengths[batch[0]] > max_tokens)):
            batches.append([index])
        else:
            batch.append(index)
    return batches


def padding_share(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Share of the tokens a set of batches pays for that are padding."""
    paid = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    real = sum(lengths[i] for b in batches for i in b)
    return 1.0 - real / paid if paid else 0.0
