"""The paired bootstrap over dev examples and seeds, on constructed cases with known differences."""

from __future__ import annotations

import numpy as np
import pytest

from mtbert.evaluate.bootstrap import paired_bootstrap


def test_a_known_accuracy_difference_is_found_and_its_interval_holds_it():
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 5, size=2000)
    better, worse = gold.copy(), gold.copy()
    worse[:400] = (worse[:400] + 1) % 5   # 80% right
    better[:200] = (better[:200] + 1) % 5  # 90% right: +0.10
    result = paired_bootstrap([{"sst": better}], [{"sst": worse}], {"sst": gold}, {"sst": "accuracy"}, 1000)
    interval = result["sst_acc"]
    assert interval.difference == pytest.approx(0.10)
    assert interval.low < 0.10 < interval.high and interval.excludes_zero
    # the same items are wrong in both but for 200: the pairing makes the interval narrow (an unpaired
    # bootstrap's half-width would be about 2 * sqrt(0.9*0.1/2000 + 0.8*0.2/2000) = 0.022)
    assert interval.high - interval.low < 0.03
    assert result["composite"].difference == pytest.approx(0.10)


def test_equal_systems_give_an_interval_around_zero_and_seeds_widen_it():
    rng = np.random.default_rng(1)
    gold = rng.normal(2.5, 1.0, size=500)
    runs = [{"sts": gold + rng.normal(0, 1.0, size=500)} for _ in range(6)]
    result = paired_bootstrap(runs[:3], runs[3:], {"sts": gold}, {"sts": "pearson"}, 1000)["sts_pearson"]
    assert result.low < 0 < result.high and not result.excludes_zero
    one = paired_bootstrap(runs[:1], runs[:1], {"sts": gold}, {"sts": "pearson"}, 500)["sts_pearson"]
    assert one.difference == 0 and one.low == one.high == 0  # the same run against itself


def test_the_composite_maps_pearson_to_half_its_scale():
    gold = np.arange(100, dtype=float)
    perfect, noisy = {"sts": gold.copy()}, {"sts": gold + np.random.default_rng(2).normal(0, 30, 100)}
    result = paired_bootstrap([perfect], [noisy], {"sts": gold}, {"sts": "pearson"}, 200)
    assert result["composite"].difference == pytest.approx(result["sts_pearson"].difference / 2)


def test_misaligned_runs_are_refused():
    with pytest.raises(ValueError, match="3 predictions for sst, 4 gold labels"):
        paired_bootstrap([{"sst": np.zeros(3)}], [{"sst": np.zeros(4)}], {"sst": np.zeros(4)}, {"sst": "accuracy"})
