"""Batches: every example once per epoch, little padding, schedules deterministic per seed."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mtbert.multitask import bucketed_batches, padding_share, random_batches, sorted_batches


@settings(max_examples=80, deadline=None)
@given(lengths=st.lists(st.integers(1, 128), min_size=1, max_size=400), batch_size=st.integers(1, 40),
       bucket=st.integers(1, 10), seed=st.integers(0, 10_000))
def test_bucketed_batches_hold_every_example_exactly_once(lengths, batch_size, bucket, seed):
    batches = bucketed_batches(lengths, batch_size, torch.Generator().manual_seed(seed), bucket)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    assert all(1 <= len(b) <= batch_size for b in batches)
    assert sorted(i for b in sorted_batches(lengths, batch_size) for i in b) == list(range(len(lengths)))


@settings(max_examples=80, deadline=None)
@given(lengths=st.lists(st.integers(1, 128), min_size=1, max_size=400), batch_size=st.integers(1, 200),
       max_tokens=st.integers(0, 4096))
def test_sorted_batches_keep_every_example_once_within_both_caps(lengths, batch_size, max_tokens):
    batches = sorted_batches(lengths, batch_size, max_tokens)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert 1 <= len(batch) <= batch_size
        longest = max(lengths[i] for i in batch)
        assert lengths[batch[0]] == longest
        # Over the cap only when one example alone is longer than it.
        assert max_tokens == 0 or len(batch) * longest <= max_tokens or len(batch) == 1
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(lengths, reverse=True)


def test_a_token_cap_cuts_evaluation_padding_on_a_long_tailed_split():
    generator = torch.Generator().manual_seed(0)
    # Mostly short sentences with a long tail, as in STS-B dev.
    lengths = (torch.randint(8, 30, (800,), generator=generator).tolist()
               + torch.randint(30, 120, (60,), generator=generator).tolist())
    uncapped = padding_share(lengths, sorted_batches(lengths, 128))
    capped = padding_share(lengths, sorted_batches(lengths, 128, 1024))
    assert uncapped > 0.1 and capped < 0.05


def test_bucketing_cuts_padding_and_still_shuffles():
    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(5, 80, (5000,), generator=generator).tolist()
    plain = random_batches(len(lengths), 32, torch.Generator().manual_seed(1))
    bucketed = bucketed_batches(lengths, 32, torch.Generator().manual_seed(1), 50)
    assert padding_share(lengths, plain) > 0.3
    assert padding_share(lengths, bucketed) < 0.05
    other_epoch = bucketed_batches(lengths, 32, torch.Generator().manual_seed(2), 50)
    assert bucketed != other_epoch
