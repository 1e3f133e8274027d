"""SMART's cost and effect, measured.

    python benchmarks/smart.py [--steps 12] [--limit 600] [--skip-runs] [--name smart]

Cost: two trainers built from the same recipe and seed, one plain and one with SMART on every task,
take the same real batches in one process, alternately, step by step; the ratio of their summed step
times (after two warm-up steps) is printed beside the arithmetic floor. The floor counts encoder passes
in units of one forward F (a backward with weight gradients is 2F, one to the input only is F): plain
3F; SMART with K ascent steps 3F (clean, with dropout) + 3F (the proximal term's student without dropout,
which is also R_s's reference) + F (teacher) + K·2F (noised passes) + 3F (adversarial pass) = (10 + 2K)F,
i.e. 4x for K = 1. The regulariser's passes run in fp32 (``train.smart.precision: fp32``) while the
clean pass runs in the run's precision, so under bf16 the measured ratio sits above this floor.

Effect: short runs of the base multitask recipe (recipes/multitask-base.yaml) (first ``--limit`` examples of each split, one epoch),
plain against SMART, dev scores and training seconds.
"""

from __future__ import annotations

import argparse
import time

from common import BASE_RECIPE, machine, markdown_table, run_recipe, save
from mtbert.config import load_config
from mtbert.train import Trainer

SMART = "train.smart={enabled: true}"


def floor(steps: int, proximal: bool = True) -> float:
    student_or_reference = 3 + 1 if proximal else 1  # the student (with its backward) and the teacher, or a reference
    return (3 + student_or_reference + 2 * steps + 3) / 3


def step_cost_ratio(limit: int, steps: int, output_root: str) -> dict:
    base = ["train.progress=false", f"data.limit={limit}", "train.epochs=1", "train.checkpoint_every=0"]
    plain = Trainer(load_config(BASE_RECIPE, base), f"{output_root}/cost-plain")
    smart = Trainer(load_config(BASE_RECIPE, base + [SMART]), f"{output_root}/cost-smart")
    plan = plain.epoch_plan(0)[:steps]
    times = {"plain": [], "smart": []}
    for step in plan:
        for name, trainer in (("plain", plain), ("smart", smart)):
            started = time.perf_counter()
            trainer.train_step(step)
            times[name].append(time.perf_counter() - started)
    plain_s, smart_s = sum(times["plain"][2:]), sum(times["smart"][2:])
    return {"steps_timed": len(plan) - 2, "plain_seconds": plain_s, "smart_seconds": smart_s,
            "ratio": smart_s / plain_s, "floor": floor(1), "device": machine(plain.device),
            "precision": plain.precision.name}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--limit", type=int, default=600)
    parser.add_argument("--skip-runs", action="store_true", help="measure the step cost only")
    parser.add_argument("--output-root", default="runs/smart-bench")
    parser.add_argument("--name", default="smart", help="record name in benchmarks/results")
    args = parser.parse_args()
    cost = step_cost_ratio(args.limit, args.steps, args.output_root)
    print(f"SMART step / plain step on the same {cost['steps_timed']} batches, {cost['precision']}: "
          f"{cost['ratio']:.2f}x (arithmetic floor {cost['floor']:.2f}x; {cost['smart_seconds']:.1f} s vs "
          f"{cost['plain_seconds']:.1f} s)")
    rows, runs = [], {}
    if not args.skip_runs:
        for name, extra in (("plain", []), ("SMART (all tasks, report defaults)", [SMART])):
            overrides = [f"data.limit={args.limit}", "train.epochs=1", "train.checkpoint_every=0", *extra]
            trainer, results, wall = run_recipe(BASE_RECIPE, overrides, f"{args.output_root}/{name[:5]}")
            best = results["best"]
            runs[name] = {"results": results, "wall_seconds": wall}
            rows.append([name, f"{best['sst_acc']:.3f}", f"{best['quora_acc']:.3f}", f"{best['sts_pearson']:.3f}",
                         f"{best['composite']:.3f}", f"{results['train_seconds']:.0f}"])
    table = markdown_table(["run", "SST acc", "Quora acc", "STS r", "composite", "train s"], rows) if rows else ""
    print(f"\nMachine: {cost['device']['device']}; model all-MiniLM-L6-v2 (embedded); first {args.limit} examples "
          f"of each split, 1 epoch, {cost['precision']}\n")
    print(table)
    save(args.name, {"cost": cost, "limit": args.limit, "runs": runs, "table": table})


if __name__ == "__main__":
    main()
