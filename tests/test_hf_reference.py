"""The tuned transformers reference's pieces: the Trainer's length-grouped order, the decay groups and the
learning-rate items, each checked against what the Trainer does."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from hf_reference import BATCH, MEGA_BATCH, decay_groups, learning_rates, length_grouped  # noqa: E402
from mtbert.tasks import Example  # noqa: E402


def test_length_grouped_order_is_a_shuffled_permutation_sorted_within_mega_batches():
    examples = [Example(str(i), ("x" * random.Random(i).randint(1, 200),), 0, i + 2) for i in range(4000)]
    order = length_grouped(examples, random.Random(0))
    assert sorted(order) == list(range(4000))
    size = MEGA_BATCH * BATCH
    for start in range(0, 4000, size):
        lengths = [len(examples[i].texts[0]) for i in order[start: start + size]]
        assert lengths == sorted(lengths, reverse=True)
    assert order != length_grouped(examples, random.Random(1))  # the grouping itself is random
    assert order[:size] != sorted(range(size), key=lambda i: -len(examples[i].texts[0]))  # not a global sort


def test_decay_skips_biases_and_layer_norms():
    model = torch.nn.Module()
    model.dense = torch.nn.Linear(2, 2)
    model.LayerNorm = torch.nn.LayerNorm(2)
    decay, no_decay = decay_groups(model, 0.01)
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert [p is model.dense.weight for p in decay["params"]] == [True]
    assert len(no_decay["params"]) == 3  # dense.bias, LayerNorm.weight, LayerNorm.bias


def test_a_tasks_own_rates_win_over_the_shared_ones():
    items = ["2e-5", "5e-5", "sst=3e-5"]
    assert learning_rates(items, "sst") == [3e-5]
    assert learning_rates(items, "quora") == [2e-5, 5e-5]
    assert learning_rates(["sst=3e-5"], "quora") == []  # main() then takes the setup's grid
