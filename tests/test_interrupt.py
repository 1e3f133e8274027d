"""A real Ctrl-C (SIGINT) on `mtbert train`: it saves a checkpoint, exits 130, and --resume finishes."""

from __future__ import annotations

import json
import re
import os
import signal
import subprocess
import sys
import time

from mtbert.cli import main


def test_sigint_saves_a_checkpoint_and_resume_finishes(tmp_path, tiny_checkpoint, data_dir):
    run = tmp_path / "run"
    sets = {"model.name": tiny_checkpoint, "data.dir": data_dir, "data.limit": 16, "train.epochs": 12,
            "train.batch_size": 8, "train.progress": "false", "model.max_length": 32,
            "train.device": "cpu"}  # a GPU could finish all 12 epochs before the signal lands
    command = [sys.executable, "-m", "mtbert.cli", "train", "--config", "recipes/multitask-base.yaml",
               "--output-dir", str(run)]
    for key, value in sets.items():
        command += ["--set", f"{key}={value}"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    metrics = run / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().strip()):
        time.sleep(0.2)
    assert process.poll() is None, process.communicate()
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "continue with: mtbert train --resume" in err
    stopped = re.fullmatch(r"interrupted at step (\d+); continue with: mtbert train --resume .*\n", out)
    assert stopped and 0 < int(stopped.group(1)) < 12 * 6, out
    assert (run / "checkpoint.pt").exists() and not (run / "results.json").exists()
    assert main(["train", "--resume", str(run)]) == 0
    results = json.loads((run / "results.json").read_text())
    assert results["steps"] == 12 * 6  # 3 tasks x ceil(16 / 8) batches per epoch
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["epoch"] for r in records if r["split"] == "dev"] == list(range(1, 13))
    assert [r["step"] for r in records if r["split"] == "train"] == [72]  # the run's last step is always logged
