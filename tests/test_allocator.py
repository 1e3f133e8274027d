"""Keeping freed memory mapped: a large block freed and allocated again faults its pages in again by
default (glibc returns it to the system), and not once the setting is made; the trainer makes it on a
CPU unless the config says no. Each process counts its own page faults, so each case runs in its own."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mtbert.train import Trainer, trainer as trainer_module

from test_multitask_training import tiny_config

FAULTS_AFTER_REALLOCATING = """
import resource, sys, torch
from mtbert.train.allocator import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
block = torch.zeros(12_000_000)  # 48 MB: over glibc's largest mmap threshold (32 MB)
del block
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
block = torch.zeros(12_000_000)
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults_after_reallocating(mode: str) -> tuple[str, int]:
    done = subprocess.run([sys.executable, "-c", FAULTS_AFTER_REALLOCATING, mode], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    kept, faults = done.stdout.split()
    return kept, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_a_freed_large_block_is_reused_without_faulting_its_pages_in_again():
    kept, faults_kept = faults_after_reallocating("keep")
    _, faults_default = faults_after_reallocating("default")
    assert kept == "True"
    assert faults_default > 10_000  # 48 MB of 4 KB pages, each faulted in anew
    assert faults_kept < 1_000


@pytest.mark.parametrize("setting", [True, False])
def test_the_trainer_keeps_freed_memory_unless_told_not_to(setting, tmp_path, tiny_checkpoint, data_dir, monkeypatch):
    calls = []
    monkeypatch.setattr(trainer_module, "keep_freed_memory", lambda: calls.append(1) or True)
    config = tiny_config(tiny_checkpoint, data_dir, **{"train.keep_freed_memory": setting, "train.device": "cpu"})
    Trainer(config, tmp_path / "run")
    assert calls == ([1] if setting else [])
