"""One study run out of several single-task runs: each task's model is trained on its own (the
single-task mtbert teachers), and the row scores them together as one system would be scored.

    python benchmarks/combined_run.py --out RUN_DIR TASK_RUN ...

Writes into RUN_DIR what the study reads of a run: ``results.json`` (each task's best dev epoch, the
composite of those, training time and tokens summed), ``metrics.jsonl`` (per epoch, every task's dev
metrics and their composite), ``predictions/`` (every part's leaderboard files) and ``config.yaml``
(the parts' configs, by task).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import yaml

from mtbert.tasks import composite_score, get_task, metric_key


def task_of(run: Path) -> str:
    tasks = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))["data"]["tasks"]
    if len(tasks) != 1:
        raise SystemExit(f"{run} trained {len(tasks)} tasks; combined_run takes single-task runs")
    return tasks[0]


def combine(parts: list[Path], out: Path) -> dict:
    tasks = {task_of(run): run for run in parts}
    metrics = {task: get_task(task).metric for task in tasks}
    results = {task: json.loads((run / "results.json").read_text(encoding="utf-8")) for task, run in tasks.items()}
    evaluations = {task: [json.loads(line) for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
                          if json.loads(line).get("split") == "dev"] for task, run in tasks.items()}
    keys = {task: metric_key(task, metric) for task, metric in metrics.items()}
    best = {keys[task]: results[task]["best"][keys[task]] for task in tasks}
    best.update({"split": "dev", "epoch": max(results[t]["best"]["epoch"] for t in tasks),
                 "composite": composite_score(best, metrics)})
    per_epoch = []
    for epoch in sorted({e["epoch"] for records in evaluations.values() for e in records}):
        values = {}
        for task, records in evaluations.items():
            at = [r for r in records if r["epoch"] == epoch]
            if at:
                values[keys[task]] = at[-1][keys[task]]
        if len(values) == len(tasks):
            per_epoch.append({"split": "dev", "epoch": epoch, **values, "composite": composite_score(values, metrics)})
    seconds = sum(r["train_seconds"] for r in results.values())
    tokens = sum(r["train_tokens_per_second"] * r["train_seconds"] for r in results.values())
    combined = {
        "best": best, "steps": sum(r["steps"] for r in results.values()), "train_seconds": round(seconds, 2),
        "train_tokens_per_second": round(tokens / max(seconds, 1e-9), 1),
        "padding_share": round(sum(r["padding_share"] * r["train_seconds"] for r in results.values())
                               / max(seconds, 1e-9), 4),
        "parameters": {"model": {key: sum(r["parameters"]["model"][key] for r in results.values())
                                 for key in ("stored", "tunable")}},
        "parts": {task: str(run) for task, run in tasks.items()},
    }
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / "predictions", ignore_errors=True)
    (out / "predictions").mkdir()
    for run in tasks.values():
        for path in (run / "predictions").iterdir():
            shutil.copyfile(path, out / "predictions" / path.name)
    (out / "results.json").write_text(json.dumps(combined, indent=2) + "\n", encoding="utf-8")
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in per_epoch), encoding="utf-8")
    configs = {task: yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8")) for task, run in tasks.items()}
    (out / "config.yaml").write_text(yaml.safe_dump({"parts": configs}, sort_keys=False), encoding="utf-8")
    return combined


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("parts", type=Path, nargs="+")
    args = parser.parse_args()
    combined = combine(args.parts, args.out)
    print(json.dumps(combined["best"]))


if __name__ == "__main__":
    main()
