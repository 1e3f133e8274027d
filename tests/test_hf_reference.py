"""The tuned transformers reference's pieces: the Trainer's length-grouped order, the decay groups and the
learning-rate items, each checked against what the Trainer does; the rule that widens the rate grid, and a
run that finishes an earlier one's grid without training its rates again."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from hf_reference import BATCH, MEGA_BATCH, SETUPS, decay_groups, learning_rates, length_grouped, pending  # noqa: E402
from lr_grid import GRID, WIDER, grid_finished, next_rates  # noqa: E402
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


def results(*pairs):
    return [{"lr": lr, "dev": dev} for lr, dev in pairs]


def test_the_grid_widens_upward_only_while_its_best_is_its_highest_rate():
    assert next_rates([]) == list(GRID)
    assert next_rates(results((2e-5, 0.5))) == [3e-5, 5e-5]  # the grid first
    assert next_rates(results((2e-5, 0.5), (3e-5, 0.6), (5e-5, 0.55))) == []  # the best is inside
    assert next_rates(results((2e-5, 0.5), (3e-5, 0.6), (5e-5, 0.7))) == [WIDER[0]]  # at the edge: one more
    assert next_rates(results((2e-5, 0.5), (3e-5, 0.6), (5e-5, 0.7), (8e-5, 0.65))) == []
    assert next_rates(results((2e-5, 0.5), (3e-5, 0.6), (5e-5, 0.7), (8e-5, 0.75))) == [WIDER[1]]
    spent = results((2e-5, 0.1), (3e-5, 0.2), (5e-5, 0.3), *((lr, 0.4 + i / 10) for i, lr in enumerate(WIDER)))
    assert next_rates(spent) == []  # the wider rates are spent: the edge stays, and the report says so
    assert next_rates(results((2e-5, 0.7), (3e-5, 0.6), (5e-5, 0.7))) == []  # equals: the first (lower) wins
    assert not grid_finished({"sst": results((2e-5, 0.5), (3e-5, 0.6), (5e-5, 0.7)), "sts": results((2e-5, 0.9))})
    assert grid_finished({"sst": results((2e-5, 0.5), (3e-5, 0.6), (5e-5, 0.55))})


def test_given_rates_are_not_widened_and_the_quoted_setup_keeps_its_one_rate():
    edge = results((2e-5, 0.5), (5e-5, 0.7))
    assert pending(edge, [2e-5, 5e-5], SETUPS["tuned"]) == []  # --lr: exactly those
    assert pending(edge, [], SETUPS["tuned"]) == [3e-5]
    assert pending([], [], SETUPS["quoted"]) == [5e-5] and pending(results((5e-5, 0.9)), [], SETUPS["quoted"]) == []


def test_a_run_finishes_an_earlier_grid_and_keeps_its_best_predictions(tmp_path, tiny_checkpoint, data_dir):
    """An earlier run whose best SST rate is the grid's top (with a dev score nothing beats): only the wider
    rate is trained, the earlier predictions are kept for the chosen rate, and the counts the earlier
    record lacked come from the new run."""
    earlier = tmp_path / "earlier"
    (earlier / "predictions").mkdir(parents=True)
    for split in ("dev", "test"):
        (earlier / "predictions" / f"sst-{split}-output.csv").write_text(f"earlier {split}\n")
    tried = [{"lr": lr, "dev_per_epoch": [dev], "dev": dev, "best_epoch": 1, "seconds": 10.0}
             for lr, dev in zip(GRID, (0.2, 0.3, 1.0))]
    (earlier / "record.json").write_text(json.dumps({"tried": {"sst": tried}, "wall_seconds": 30.0}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                                     os.environ.get("PYTHONPATH")]))}
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[1] / "benchmarks" / "hf_reference.py"),
                          "--tasks", "sst", "--model", str(tiny_checkpoint), "--data-dir", str(data_dir),
                          "--limit", "16", "--epochs", "1", "--out", str(out), "--previous", str(earlier)],
                         capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    written = json.loads((out / "results.json").read_text())
    assert [r["lr"] for r in written["tried"]["sst"]] == [*GRID, WIDER[0]]  # the grid's rates were not trained again
    assert written["learning_rates"] == {"sst": GRID[-1]} and written["best"]["sst_acc"] == 1.0
    assert (out / "predictions" / "sst-dev-output.csv").read_text() == "earlier dev\n"
    new = written["tried"]["sst"][-1]
    assert new["real_tokens"] > 0 and all(r["real_tokens"] == new["real_tokens"] for r in written["tried"]["sst"])
    assert written["train_seconds"] == 30.0 + new["seconds"]
