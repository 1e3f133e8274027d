"""Data-parallel training: sharding arithmetic, and real two-process gloo runs started by torchrun
against one process on the same global batch."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, strategies as st

from mtbert.config import load_config
from mtbert.precision import resolve_device
from mtbert.train import Trainer
from mtbert.train.distributed import World
from conftest import dropout_free_heads
from test_train_cli import tiny_overrides

REPO = Path(__file__).resolve().parents[1]
# Two processes and one process add the same numbers in different orders (the all-reduce, and each
# process's thread count changes how matrix products split their sums), so gradients differ by ~1e-7
# relative. AdamW turns each gradient into an update of at most ~lr (1e-3 here) per step, so after 18
# steps those rounding differences stay below 1e-6 (7.6e-7 measured); a sharding mistake (a missing
# all-reduce, a wrong shard weight, a shard seen twice) moves weights by a sizeable part of lr per step.
TOLERANCE = 2e-5


@given(st.lists(st.integers(0, 1000), max_size=40), st.integers(1, 5))
def test_shards_of_a_batch_cover_it_exactly_once(indices, size):
    shards = [World(rank=r, size=size).shard(indices) for r in range(size)]
    assert sorted(i for shard in shards for i in shard) == sorted(indices)
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


@pytest.fixture
def one_gpu(monkeypatch):
    """A machine that reports one CUDA device (nothing runs on it: only the device choice is checked)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)


def test_each_process_takes_its_own_gpu_and_too_many_processes_are_named(one_gpu):
    assert resolve_device("auto", local_rank=0) == torch.device("cuda", 0)
    assert resolve_device("cuda", local_rank=0) == torch.device("cuda", 0)
    with pytest.raises(ValueError, match=r"LOCAL_RANK=1.*has 1 GPU.*--nproc_per_node=1.*train.device=cpu"):
        resolve_device("auto", local_rank=1)
    with pytest.raises(ValueError, match=r"train.device=cuda:2 but this machine has 1 GPU"):
        resolve_device("cuda:2")
    assert resolve_device("cpu", local_rank=1) == torch.device("cpu")


def test_one_process_world_leaves_losses_and_gradients_alone():
    world = World()
    loss = torch.tensor(2.5, requires_grad=True)
    assert world.global_loss(loss, 3, 3) is loss
    assert world.any(True) and not world.any(False)
    assert world.sum({"a": 2}) == {"a": 2}


def torchrun(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode in (0, 130), result.stderr[-8000:]
    return result


def sets(values: list[str]) -> list[str]:
    return [arg for value in values for arg in ("--set", value)]


def model_state(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)["model"]


def dev_records(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["split"] == "dev"]


@pytest.mark.parametrize("settings", [
    {},
    {"train.schedule": "zipped", "train.surgery": "pcgrad", "train.balancer": "uncertainty"},
], ids=["shuffled", "zipped-pcgrad-uncertainty"])
def test_two_processes_reach_the_parameters_of_one(tmp_path, dropout_free_checkpoint, data_dir, settings):
    # fp32: with bf16 autocast (precision: auto on an AMX CPU) half batches round differently from the
    # whole batch, and this test is about the arithmetic of splitting a step, which is exact only in fp32.
    values = tiny_overrides(dropout_free_checkpoint, data_dir, **dropout_free_heads(), **settings,
                            **{"train.tensorboard": False, "train.precision": "fp32"})
    one = Trainer(load_config("recipes/multitask-base.yaml", values), tmp_path / "one").train()
    torchrun("-m", "mtbert", "train", "--config", "recipes/multitask-base.yaml", "--output-dir",
             str(tmp_path / "two"), *sets(values))
    two_dir = tmp_path / "two"
    ours, theirs = model_state(two_dir), model_state(tmp_path / "one")
    assert ours.keys() == theirs.keys()
    for name in theirs:
        torch.testing.assert_close(ours[name], theirs[name], rtol=0, atol=TOLERANCE, msg=name)
    two = json.loads((two_dir / "results.json").read_text())
    assert two["processes"] == 2 and two["steps"] == one["steps"]
    assert two["examples_seen"] == one["examples_seen"]  # every example of every step once, over both ranks
    assert [r["step"] for r in dev_records(two_dir)] == [r["step"] for r in dev_records(tmp_path / "one")]
    assert two["best"]["composite"] == pytest.approx(one["best"]["composite"], abs=1e-4)
    # rank 0 alone writes: one log, one line per evaluation, no files from rank 1
    assert len(dev_records(two_dir)) == len(dev_records(tmp_path / "one"))
    written = sorted(p.name for p in two_dir.iterdir())
    assert written == sorted(p.name for p in (tmp_path / "one").iterdir() if p.name != "tensorboard")
    evaluations = re.findall(r"epoch \d+ dev: ", (two_dir / "train.log").read_text())
    assert len(evaluations) == len(dev_records(two_dir))  # rank 0's lines alone


def test_a_stopped_two_process_run_resumes_exactly(tmp_path, tiny_checkpoint, data_dir):
    """Dropout on, PCGrad and SMART on: the ranks agree to stop when only rank 0 is asked to, each rank's
    random stream comes back from the checkpoint, and the ranks never drift apart."""
    values = tiny_overrides(tiny_checkpoint, data_dir, **{
        "train.schedule": "zipped", "train.surgery": "pcgrad", "train.smart": "{enabled: true, tasks: [sts]}",
        "train.tensorboard": False})
    torchrun("tests/ddp_worker.py", str(tmp_path / "whole"), *sets(values))
    torchrun("tests/ddp_worker.py", str(tmp_path / "cut"), "--stop-at", "4", *sets(values))
    stopped = json.loads((tmp_path / "cut" / "worker.json").read_text())
    assert stopped["results"]["interrupted"] and stopped["results"]["step"] == 4
    torchrun("tests/ddp_worker.py", str(tmp_path / "cut"), "--resume")
    whole = json.loads((tmp_path / "whole" / "worker.json").read_text())
    resumed = json.loads((tmp_path / "cut" / "worker.json").read_text())
    assert whole["rank_spread"] == 0.0 and resumed["rank_spread"] == 0.0
    assert resumed["results"]["best"] == whole["results"]["best"]
    assert resumed["results"]["examples_seen"] == whole["results"]["examples_seen"]
    ours, theirs = model_state(tmp_path / "cut"), model_state(tmp_path / "whole")
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert (tmp_path / "cut" / "metrics.jsonl").read_text() == (tmp_path / "whole" / "metrics.jsonl").read_text()


def test_a_non_finite_loss_on_one_rank_skips_the_step_on_all(tmp_path, tiny_checkpoint, data_dir):
    """The global loss value carries rank 1's NaN to rank 0, both skip the update, and DDP still gets
    the backward it waits for, so the next steps run."""
    values = tiny_overrides(tiny_checkpoint, data_dir, **{"train.tensorboard": False})
    torchrun("tests/ddp_worker.py", str(tmp_path / "run"), "--poison-step", "2", *sets(values))
    worker = json.loads((tmp_path / "run" / "worker.json").read_text())
    assert worker["results"]["skipped_nonfinite_batches"] == 1
    assert worker["rank_spread"] == 0.0 and worker["results"]["steps"] == 18
