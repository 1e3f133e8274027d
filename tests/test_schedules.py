"""Batch schedules: what each one visits per epoch, determinism per seed, per-task batch sizes."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from mtbert.multitask import BATCH_SCHEDULES, bucketed_batches, build_schedule, plan_counts

SIZES = {"sst": 37, "quora": 90, "sts": 21}


def epoch(name: str, seed: int = 3, batch_size: int = 8, **options):
    schedule = build_schedule(name, options)
    generator = torch.Generator().manual_seed(seed)
    sizes = schedule.batch_sizes(SIZES, batch_size)
    batches = {task: bucketed_batches([1] * n, sizes[task], generator, 2) for task, n in SIZES.items()}
    return schedule.plan(batches, generator), batches, sizes


def examples_seen(plan) -> dict[str, Counter]:
    seen = {task: Counter() for task in SIZES}
    for step in plan:
        for task, indices in step:
            seen[task].update(indices)
    return seen


@pytest.mark.parametrize("name", sorted(BATCH_SCHEDULES))
def test_every_schedule_is_deterministic_per_seed(name):
    assert epoch(name)[0] == epoch(name)[0]
    assert epoch(name)[0] != epoch(name, seed=4)[0]


@pytest.mark.parametrize("name", ["shuffled", "sequential", "interleaved", "random_mixed"])
def test_full_epoch_schedules_visit_every_example_exactly_once(name):
    plan, _, _ = epoch(name)
    for task, seen in examples_seen(plan).items():
        assert sorted(seen) == list(range(SIZES[task])) and set(seen.values()) == {1}, task
    assert all(len(step) == 1 for step in plan) == build_schedule(name).one_task_per_step


def test_sequential_keeps_the_task_order():
    plan, _, _ = epoch("sequential")
    tasks = [step[0][0] for step in plan]
    assert tasks == ["sst"] * 5 + ["quora"] * 12 + ["sts"] * 3


def test_zipped_stops_at_the_smallest_task():
    plan, batches, _ = epoch("zipped")
    assert len(plan) == len(batches["sts"]) == 3
    assert all([t for t, _ in step] == list(SIZES) for step in plan)
    assert sorted(examples_seen(plan)["sts"]) == list(range(21))


def test_cycled_runs_to_the_largest_task_and_repeats_the_smaller():
    plan, batches, _ = epoch("cycled")
    assert len(plan) == len(batches["quora"]) == 12
    seen = examples_seen(plan)
    assert sorted(seen["quora"]) == list(range(90)) and set(seen["quora"].values()) == {1}
    assert set(seen["sts"]) == set(range(21)) and max(seen["sts"].values()) >= 4  # 3 batches over 12 steps


def test_round_robin_takes_turns_for_the_smallest_task_count():
    plan, batches, _ = epoch("round_robin")
    assert [[task for task, _ in step] for step in plan] == [["sst", "quora", "sts"]] * 3
    assert plan_counts(plan, SIZES)["sts"] == 21


def test_interleaved_batch_sizes_give_every_task_the_largest_tasks_batch_count():
    plan, batches, sizes = epoch("interleaved")
    rounds = math.ceil(90 / 8)
    assert sizes == {"sst": math.ceil(37 / rounds), "quora": 8, "sts": math.ceil(21 / rounds)}
    assert {task: len(b) for task, b in batches.items()}["quora"] == rounds
    assert len(plan) == rounds and [[task for task, _ in step] for step in plan[:2]] == [["sst", "quora", "sts"]] * 2


def test_proportional_and_temperature_sample_tasks_by_size():
    plan, batches, _ = epoch("proportional", seed=0, batch_size=1)
    assert len(plan) == sum(SIZES.values())
    counts = Counter(step[0][0] for step in plan)
    assert counts["quora"] > counts["sst"] > counts["sts"]
    schedule = build_schedule("temperature", {"temperature": 2.0})
    probabilities = schedule.probabilities(batches)
    expected = {t: math.sqrt(n) / sum(math.sqrt(m) for m in SIZES.values()) for t, n in SIZES.items()}
    assert probabilities == pytest.approx(expected)
    flat = build_schedule("proportional", {"temperature": 1e9}).probabilities(batches)
    assert flat == pytest.approx({t: 1 / 3 for t in SIZES})


def test_proportional_shares_fix_each_tasks_part_of_the_steps():
    shares = {"sst": 1, "quora": 0, "sts": 3}
    plan, batches, _ = epoch("proportional", seed=0, batch_size=1, shares=shares)
    assert build_schedule("proportional", {"shares": shares}).probabilities(batches) == {
        "sst": 0.25, "quora": 0.0, "sts": 0.75}
    counts = Counter(step[0][0] for step in plan)
    assert counts["quora"] == 0 and len(plan) == sum(SIZES.values())
    assert counts["sts"] / len(plan) == pytest.approx(0.75, abs=0.12)
    with pytest.raises(ValueError, match="missing: \\['sts'\\]"):
        build_schedule("proportional", {"shares": {"sst": 1, "quora": 1}}).probabilities(batches)
    with pytest.raises(ValueError, match="non-negative numbers"):
        build_schedule("proportional", {"shares": {"sst": -1}})


def test_mixed_steps_hold_every_task_in_proportion():
    plan, _, sizes = epoch("mixed", batch_size=16)
    assert sizes == {"sst": round(16 * 37 / 148), "quora": round(16 * 90 / 148), "sts": round(16 * 21 / 148)}
    assert all([t for t, _ in step] == list(SIZES) for step in plan)
    for task, seen in examples_seen(plan).items():
        assert set(seen) == set(range(SIZES[task])), task


def test_random_mixed_steps_are_full_batches_whose_task_shares_vary():
    plan, _, _ = epoch("random_mixed", batch_size=16)
    assert [sum(len(i) for _, i in step) for step in plan] == [16] * 9 + [148 - 9 * 16]
    shares = {tuple(len(i) for _, i in step) for step in plan[:-1]}
    assert len(shares) > 1  # not a fixed share per task, as mixed has
    assert all([t for t, _ in step] == [t for t in SIZES if t in dict(step)] for step in plan)  # task order kept


def test_bad_schedule_settings_are_named():
    with pytest.raises(ValueError, match="unknown batch schedule 'zigzag'"):
        build_schedule("zigzag")
    with pytest.raises(ValueError, match="bad train.schedule_options"):
        build_schedule("shuffled", {"temperature": 2})
    with pytest.raises(ValueError, match="temperature must be positive"):
        build_schedule("temperature", {"temperature": 0})


def test_annealed_sampling_flattens_the_task_shares_epoch_by_epoch():
    """Stickland & Murray's α = 1 − 0.8·e/(E − 1): proportional in the first epoch, p ∝ n^0.2 in the last."""
    schedule = build_schedule("annealed")
    tasks = {task: [[0]] * n for task, n in SIZES.items()}  # n one-example batches: n examples per task
    first, middle, last = (schedule.for_epoch(e, 3).probabilities(tasks) for e in range(3))
    total = sum(SIZES.values())
    assert first == pytest.approx({t: n / total for t, n in SIZES.items()})
    for alpha, shares in ((0.6, middle), (0.2, last)):
        weights = {t: n ** alpha for t, n in SIZES.items()}
        assert shares == pytest.approx({t: w / sum(weights.values()) for t, w in weights.items()})
    assert schedule.for_epoch(0, 1).probabilities(tasks) == pytest.approx(first)  # one epoch: proportional
    with pytest.raises(ValueError, match="decay must be in"):
        build_schedule("annealed", {"decay": 1.0})
