"""benchmarks/study.py at a tiny scale: a run's record and predictions are kept, its checkpoint is not, a
finished run is skipped on the next sitting, and the table and the dry-run plan are drawn from records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def study(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / "study.py"), *args], capture_output=True,
                          text=True, env=env, timeout=600, cwd=REPO)


def test_a_tiny_study_records_skips_and_tabulates(tmp_path, tiny_checkpoint, data_dir):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "MTBERT_DATA_DIR": str(data_dir)}
    tiny = ["--set", f"model.name={tiny_checkpoint}", "--set", "data.limit=16", "--set", "train.epochs=1",
            "--set", "model.max_length=32", "--set", "train.device=cpu"]
    where = ["--root", str(tmp_path / "records"), "--runs", str(tmp_path / "runs")]
    first = study("--only", "quickstart", "--seeds", "1", *tiny, *where, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    record_dir = tmp_path / "records" / "quickstart" / "seed0"
    record = json.loads((record_dir / "record.json").read_text())
    assert record["smoke"] and record["seed"] == 0 and "composite" in record["best"]
    assert record["peak_mib"] > 0 and record["dev_per_evaluation"]
    assert yaml.safe_load(record["config"])["train"]["seed"] == 0
    assert (record_dir / "predictions" / "sst-test-output.csv").exists()
    assert not (tmp_path / "runs" / "quickstart" / "seed0" / "checkpoint.pt").exists()
    again = study("--only", "quickstart", "--seeds", "1", *tiny, *where, env=env)
    assert again.returncode == 0 and "quickstart seed 0 ..." not in again.stdout  # finished: skipped
    shown = study("--table", *where, env=env)
    assert "| quickstart | 1 |" in shown.stdout and "smoke" in shown.stdout
    planned = study("--dry-run", "--only", "quickstart", "000-system", *where, env=env)
    assert "| quickstart | 0 |" not in planned.stdout and "| quickstart | 1 |" in planned.stdout  # seed 0 is done
    assert "| 000-system | 2 |" in planned.stdout and "5 runs left" in planned.stdout
