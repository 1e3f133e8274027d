"""Evaluation speed: what `mtbert evaluate` (and each epoch's dev evaluation) costs, per cap on a batch's
padded tokens.

    python benchmarks/eval_speed.py --model RUN_DIR/best [--caps 1024,2048,4096,0] [--repeats 3]
                                    [--precision auto] [--name eval_speed]

Times ``evaluate_split`` over the model's whole dev sets (SST, Quora, STS for the quickstart) once per
cap (``train.eval_max_tokens``; 0 leaves only the 128-example cap) in each round, the caps' order
rotating from round to round so that this machine's drift falls on all of them alike; a cap's time is
its median over the rounds, after one untimed pass. Tokens/s count real (non-padding) tokens. The dev
metrics of each cap are kept beside its time: a cap changes which examples share a batch, never what
is predicted (tests/test_evaluator.py), so they must agree to the rounding of other batch shapes.
The code is whatever ``mtbert`` imports: put an older checkout first on PYTHONPATH to time it.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from common import machine, markdown_table, save
from mtbert.config import resolve_data_dir
from mtbert.evaluate import evaluate_split
from mtbert.multitask import MultitaskModel, padding_share, sorted_batches
from mtbert.precision import resolve_precision
from mtbert.train.data import labelled_split, load_task_splits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a trained multitask model directory (RUN_DIR/best)")
    parser.add_argument("--caps", default="1024,2048,4096,0", help="padded-token caps to time (0: none)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds over all caps")
    parser.add_argument("--batch-size", type=int, default=128, help="the examples cap of a batch")
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    parser.add_argument("--limit", type=int, help="the first N dev examples per task (a quick check; default all)")
    parser.add_argument("--name", default="eval_speed")
    args = parser.parse_args()
    caps = [int(c) for c in args.caps.split(",")]
    device = torch.device("cpu")
    model = MultitaskModel.from_pretrained(args.model).to(device)
    precision = resolve_precision(args.precision, device)
    data = load_task_splits(model, resolve_data_dir(None, model.data_dir), args.limit, splits=("dev",))
    dev = labelled_split(data, "dev")
    # Every pass's lengths in one list, each task's from its offset; a task whose pair order is not fixed is
    # predicted over its pairs as given and swapped: two passes.
    lengths, spans = [], []
    for task, features in dev.items():
        for _ in range(2 if model.pair_order(task) == "both" else 1):
            spans.append((len(lengths), features))
            lengths += features.lengths
    real = sum(lengths)

    def run(cap: int) -> dict:
        return evaluate_split(model, dev, args.batch_size, precision, cap, progress=False)[0]

    metrics = {cap: run(cap) for cap in caps}  # the untimed pass
    seconds: dict[int, list[float]] = {cap: [] for cap in caps}
    for round_ in range(args.repeats):
        for cap in caps[round_ % len(caps):] + caps[: round_ % len(caps)]:
            started = time.perf_counter()
            run(cap)
            seconds[cap].append(time.perf_counter() - started)

    rows, records = [], []
    for cap in caps:
        batches = [[offset + i for i in b] for offset, features in spans
                   for b in sorted_batches(features.lengths, args.batch_size, cap)]
        median = statistics.median(seconds[cap])
        record = {"cap": cap, "seconds": seconds[cap], "median_seconds": median, "real_tokens": real,
                  "padding": padding_share(lengths, batches), "batches": len(batches), "metrics": metrics[cap]}
        records.append(record)
        rows.append([cap or "none", record["batches"], f"{median:.2f} s", f"{real / median:,.0f}",
                     f"{100 * record['padding']:.1f}%",
                     " / ".join(f"{v:.4f}" for k, v in metrics[cap].items() if k != "composite"),
                     f"{metrics[cap]['composite']:.4f}"])
    table = markdown_table(["padded-token cap", "batches", "median time", "real tok/s", "padding",
                            " / ".join(k for k in metrics[caps[0]] if k != "composite"), "composite"], rows)
    info = {**machine(device), "precision": precision.name}
    print(f"\nMachine: {info['device']}; {precision.name}; model {args.model}; {real:,} real dev tokens "
          f"({args.limit or 'all'} examples per task); "
          f"median of {args.repeats}\n")
    print(table)
    save(args.name, {"machine": info, "model": args.model, "limit": args.limit, "repeats": args.repeats,
                     "results": records, "table": table})


if __name__ == "__main__":
    main()
