"""Dev evaluations within an epoch (train.eval_every): when they fall, that any of them can become best/,
and that a run stopped at one resumes to the same records."""

from __future__ import annotations

import json

import pytest

from mtbert.cli import main
from mtbert.config import ConfigError, load_config
from mtbert.train import Trainer

from conftest import stop_at
from test_train_cli import tiny_overrides

# The shuffled-cosine recipe (one task batch per step), 24 examples of each task in batches of 8: 9 steps an
# epoch, 18 in two. Every 3 steps, and each epoch's end, which falls on a multiple of 3 and is recorded
# once: steps 3, 6, 9 | 12, 15, 18.
EVERY_3 = {"train.eval_every": 3, "train.checkpoint_every": 0}
EXPECTED_STEPS = [3, 6, 9, 12, 15, 18]


def dev_records(run) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [record for record in map(json.loads, lines) if record["split"] == "dev"]


def test_evaluations_fall_every_n_steps_and_at_epoch_ends_and_best_is_the_best_of_them(tmp_path, tiny_checkpoint,
                                                                                       data_dir, capsys):
    run = tmp_path / "run"
    args = ["train", "--config", "recipes/shuffled-cosine.yaml", "--output-dir", str(run)]
    for item in tiny_overrides(tiny_checkpoint, data_dir, **EVERY_3):
        args += ["--set", item]
    assert main(args) == 0
    records = dev_records(run)
    assert [r["step"] for r in records] == EXPECTED_STEPS
    assert [r["epoch"] for r in records] == [1, 1, 1, 2, 2, 2]
    assert len({r["composite"] for r in records}) > 1  # the model changed between them

    best = max(records, key=lambda r: r["composite"])
    results = json.loads((run / "results.json").read_text())
    assert results["best"] == best
    capsys.readouterr()
    assert main(["evaluate", "--model", str(run / "best"), "--data-dir", str(data_dir), "--limit", "24",
                 "--device", "cpu", "--precision", results["precision"]]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    for metric in ("sst_acc", "quora_acc", "sts_pearson", "composite"):
        assert evaluated[metric] == pytest.approx(best[metric], abs=1e-6), metric


@pytest.mark.parametrize("stop", [3, 5])  # on an evaluation's step (it runs, then the stop), between two
def test_a_run_stopped_mid_epoch_resumes_to_the_same_evaluations(tmp_path, tiny_checkpoint, data_dir, stop):
    config = load_config("recipes/shuffled-cosine.yaml", tiny_overrides(tiny_checkpoint, data_dir, **EVERY_3))
    whole = Trainer(config, tmp_path / "whole").train()
    stopped = Trainer(config, tmp_path / "cut", callbacks=[stop_at(stop)]).train()
    assert stopped["interrupted"] and stopped["step"] == stop
    assert [r["step"] for r in dev_records(tmp_path / "cut")] == [3]
    resumed = Trainer(config, tmp_path / "cut").train(resume=True)
    assert resumed["best"] == whole["best"]
    assert dev_records(tmp_path / "cut") == dev_records(tmp_path / "whole")


def test_a_negative_interval_is_refused_by_name(tiny_checkpoint, data_dir):
    with pytest.raises(ConfigError, match="train.eval_every: must be 0"):
        load_config("recipes/shuffled-cosine.yaml", tiny_overrides(tiny_checkpoint, data_dir, **{"train.eval_every": -1}))
