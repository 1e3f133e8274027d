"""How cost grows with batch size and sequence length: tokens/s and peak memory, training and inference.

    python benchmarks/cost_growth.py [--models all-MiniLM-L6-v2,bert-base] [--batches 8,16,32,64,128]
                                     [--lengths 32,64,128,256,512] [--repeats 2] [--modes train,infer]
                                     [--name cost_growth]

Two sweeps per model: batch size at length 64, and length at batch 32 (no padding; our encoder and
AdamW, bf16 autocast where native). Each point runs in a process of its own, so its peak resident
memory (the kernel's ru_maxrss of that process: weights, optimizer state, activations and the
allocator's slack) is its own. Writes benchmarks/results/NAME.json and NAME.png. The points run whatever
``mtbert`` imports: put an older checkout first on PYTHONPATH to measure it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import CHILD_CWD, RESULTS, markdown_table, save

POINT = r"""
import json, sys, time, torch
from mtbert import AdamW, BertConfig, BertModel
from mtbert.precision import resolve_precision
name, mode, batch, length, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
model = BertModel.from_pretrained(name) if name != "bert-base" else BertModel(BertConfig())
precision = resolve_precision("auto", torch.device("cpu"))
ids = torch.randint(1000, 20000, (batch, length)); mask = torch.ones_like(ids)
optimizer = AdamW(model.parameters(), lr=1e-5, weight_decay=0.01)
model.train(mode == "train")
def step():
    if mode == "train":
        with precision.autocast():
            out = model(input_ids=ids, attention_mask=mask)
        (out.last_hidden_state.float().pow(2).mean()).backward()
        optimizer.step(); optimizer.zero_grad(set_to_none=True)
    else:
        with torch.no_grad(), precision.autocast():
            model(input_ids=ids, attention_mask=mask)
step()
times = []
for _ in range(repeats):
    started = time.perf_counter(); step(); times.append(time.perf_counter() - started)
print(json.dumps({"seconds": min(times)}))
"""


def run_point(name: str, mode: str, batch: int, length: int, repeats: int) -> dict:
    process = subprocess.Popen([sys.executable, "-c", POINT, name, mode, str(batch), str(length), str(repeats)],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=CHILD_CWD)
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        return {"error": f"exit status {status}"}
    seconds = json.loads(out.strip().splitlines()[-1])["seconds"]
    return {"tokens_per_second": batch * length / seconds, "peak_mib": usage.ru_maxrss / 1024, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="all-MiniLM-L6-v2,bert-base")
    parser.add_argument("--batches", default="8,16,32,64,128")
    parser.add_argument("--lengths", default="32,64,128,256,512")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--modes", default="train,infer")
    parser.add_argument("--name", default="cost_growth", help="results file name (benchmarks/results/NAME.json)")
    args = parser.parse_args()
    points = []
    started = time.perf_counter()
    for name in args.models.split(","):
        for mode in args.modes.split(","):
            sweeps = [(int(b), 64) for b in args.batches.split(",")] + [(32, int(n)) for n in args.lengths.split(",")
                                                                        if int(n) != 64]
            for batch, length in sweeps:
                result = run_point(name, mode, batch, length, args.repeats)
                points.append({"model": name, "mode": mode, "batch": batch, "length": length, **result})
                print(json.dumps(points[-1]), flush=True)
    rows = [[p["model"], p["mode"], p["batch"], p["length"], f"{p.get('tokens_per_second', 0):,.0f}",
             f"{p.get('peak_mib', 0):,.0f}"] for p in points]
    table = markdown_table(["model", "mode", "batch", "length", "tokens/s", "peak MiB"], rows)
    print(table)
    plot(points, RESULTS / f"{args.name}.png")
    from common import machine
    import torch
    save(args.name, {"machine": machine(torch.device("cpu")), "points": points, "table": table,
                         "seconds": round(time.perf_counter() - started)})


def plot(points: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 2, figsize=(11, 7))
    for row, metric, label in ((0, "tokens_per_second", "tokens/s"), (1, "peak_mib", "peak MiB")):
        for column, (axis_key, fixed_key, fixed) in enumerate((("batch", "length", 64), ("length", "batch", 32))):
            axis = axes[row][column]
            for model in sorted({p["model"] for p in points}):
                for mode in ("train", "infer"):
                    chosen = sorted((p[axis_key], p[metric]) for p in points if p["model"] == model
                                    and p["mode"] == mode and p[fixed_key] == fixed and metric in p)
                    if chosen:
                        axis.plot(*zip(*chosen), marker="o", label=f"{model} {mode}")
            axis.set(xscale="log", xlabel=f"{axis_key} ({fixed_key} {fixed})", ylabel=label)
            axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
