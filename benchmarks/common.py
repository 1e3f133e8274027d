"""Helpers shared by the benchmarks: machine description, matmul peak, timing, table printing."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import torch

from mtbert.precision import cpu_has_native_bf16

# Where benchmarks write their records; $MTBERT_BENCH_RESULTS moves them (a dry run of the GPU check, a test).
RESULTS = Path(os.environ.get("MTBERT_BENCH_RESULTS") or Path(__file__).resolve().parent / "results")
REPO = Path(__file__).resolve().parents[1]
# The working directory for a child ``python -c``/``-m`` that must run the mtbert this script imports: such a
# child puts its working directory first on sys.path, so one started from the repository root takes the
# checkout's package even where PYTHONPATH names another (an older checkout being measured).
CHILD_CWD = Path(__file__).resolve().parent


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine(device: torch.device) -> dict:
    if device.type == "cuda":
        return {"device": torch.cuda.get_device_name(device), "torch": torch.__version__}
    return {"device": f"{cpu_name()}, {torch.get_num_threads()} threads", "native_bf16": cpu_has_native_bf16(),
            "torch": torch.__version__, "load_average_1min": round(os.getloadavg()[0], 2)}


def timed(function: Callable[[], None], repeats: int, device: torch.device) -> float:
    """Median seconds of ``repeats`` calls after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def matmul_peak(dtype: torch.dtype, device: torch.device, size: int = 2048) -> float:
    """Measured FLOP/s of a square matrix product: the ceiling MFU is reported against."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    seconds = timed(lambda: a @ b, 5, device)
    return 2 * size**3 / seconds


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)


def save(name: str, payload: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return path


RECIPES = Path(__file__).resolve().parents[1] / "recipes"
BASE_RECIPE = RECIPES / "multitask-base.yaml"  # what the comparison benchmarks vary one thing of


def run_recipe(recipe: str | Path, overrides: list[str], run_dir: str | Path, variants: list[str] = ()):
    """Train a recipe from scratch in ``run_dir``: returns (trainer, results, wall seconds).

    Wall time covers everything a user waits for: loading, tokenizing, training, dev evaluation each
    epoch, and the prediction files.
    """
    import logging
    import shutil

    from mtbert.config import load_config
    from mtbert.train import Trainer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    run_dir = Path(run_dir)
    shutil.rmtree(run_dir, ignore_errors=True)
    config = load_config(recipe, ["train.progress=false", *overrides], variants)
    started = time.perf_counter()
    trainer = Trainer(config, run_dir)
    results = trainer.train()
    return trainer, results, time.perf_counter() - started


def variants_parser(doc: str, variants: dict, output_root: str):
    """The arguments of a benchmark that runs named variants of the quickstart recipe on a shrunk
    slice: --only, --shrink, --eval-limit, --set, --output-root."""
    import argparse

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", choices=list(variants), default=list(variants))
    parser.add_argument("--shrink", type=int, default=20)
    parser.add_argument("--eval-limit", type=int, default=600)
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--output-root", default=output_root)
    return parser


def save_variants(name: str, args, info: dict, records: dict, header: list[str], rows: list[list],
                  model: str, fixed: str) -> None:
    """Prints and saves the table of a variants benchmark (multitask, peft_methods, recipes): the machine
    and the short-run scale (--shrink, --eval-limit) they all share, then what else the runs held fixed,
    then the table; results/NAME.json keeps the scale and every run's record beside the table."""
    table = markdown_table(header, rows)
    print(f"\nMachine: {info.get('device')}; model {model}; 1/{args.shrink} of each training set, first "
          f"{args.eval_limit} dev examples per task; {fixed}\n")
    print(table)
    save(name, {"machine": info, "shrink": args.shrink, "eval_limit": args.eval_limit, "runs": records,
                "table": table})


def variant_overrides(settings: dict, args) -> list[str]:
    """A variant's settings (mappings as JSON, which YAML reads) plus the shared short-run overrides."""
    overrides = [f"{k}={json.dumps(v) if isinstance(v, dict) else v}" for k, v in settings.items()]
    return overrides + [f"data.shrink={args.shrink}", f"data.eval_limit={args.eval_limit}", "train.epochs=1",
                        "train.checkpoint_every=0", *args.set]
