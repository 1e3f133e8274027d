"""Batches: every example once per epoch, little padding, schedules deterministic per seed."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mtbert.multitask import BATCH_SCHEDULES, bucketed_batches, get_schedule, padding_share, random_batches, sorted_batches


@settings(max_examples=80, deadline=None)
@given(lengths=st.lists(st.integers(1, 128), min_size=1, max_size=400), batch_size=st.integers(1, 40),
       bucket=st.integers(1, 10), seed=st.integers(0, 10_000))
def test_bucketed_batches_hold_every_example_exactly_once(lengths, batch_size, bucket, seed):
    batches = bucketed_batches(lengths, batch_size, torch.Generator().manual_seed(seed), bucket)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    assert all(1 <= len(b) <= batch_size for b in batches)
    assert sorted(i for b in sorted_batches(lengths, batch_size) for i in b) == list(range(len(lengths)))


def test_bucketing_cuts_padding_and_still_shuffles():
    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(5, 80, (5000,), generator=generator).tolist()
    plain = random_batches(len(lengths), 32, torch.Generator().manual_seed(1))
    bucketed = bucketed_batches(lengths, 32, torch.Generator().manual_seed(1), 50)
    assert padding_share(lengths, plain) > 0.3
    assert padding_share(lengths, bucketed) < 0.05
    other_epoch = bucketed_batches(lengths, 32, torch.Generator().manual_seed(2), 50)
    assert bucketed != other_epoch


@pytest.mark.parametrize("name", sorted(BATCH_SCHEDULES))
def test_schedules_visit_every_batch_once_and_repeat_per_seed(name):
    batches = {"a": [[0, 1], [2]], "b": [[0], [1], [2], [3]], "c": [[5]]}
    plan = get_schedule(name)(batches, torch.Generator().manual_seed(3))
    assert sorted((t, tuple(b)) for t, b in plan) == sorted((t, tuple(b)) for t, bs in batches.items() for b in bs)
    assert plan == get_schedule(name)(batches, torch.Generator().manual_seed(3))


def test_sequential_keeps_task_order_and_unknown_schedule_is_named():
    plan = get_schedule("sequential")({"a": [[0]], "b": [[1]]}, torch.Generator())
    assert [t for t, _ in plan] == ["a", "b"]
    with pytest.raises(ValueError, match="unknown batch schedule 'zigzag'"):
        get_schedule("zigzag")
