"""Multitask optimisation compared on equal terms: batch schedules, loss balancers, separate steps
and gradient surgery, each a short run of the base multitask recipe (recipes/multitask-base.yaml) on the embedded all-MiniLM-L6-v2
with the same data, seed and one epoch.

    python benchmarks/multitask.py [--shrink 20] [--eval-limit 600] [--only zipped-pcgrad ...] [--set key=value ...]

A seeded random 1/``--shrink`` of each training set (so the tasks keep their relative sizes, which is
what schedules differ on) and the first ``--eval-limit`` examples of each dev and test split. An "epoch" is what the schedule says it is (zipped stops
at the smallest task, cycled runs to the largest...), so the table gives the steps and training
examples each one used beside its scores and seconds. Zipped-sum against zipped-PCGrad/CAGrad is the
cost of gradient surgery per step (one backward per task instead of one in all).
"""

from __future__ import annotations

from common import BASE_RECIPE, machine, run_recipe, save_variants, variant_overrides, variants_parser

VARIANTS = {
    "shuffled-sum": {},
    "sequential-sum": {"train.schedule": "sequential"},
    "round_robin-sum": {"train.schedule": "round_robin"},
    "interleaved-sum": {"train.schedule": "interleaved"},
    "temperature-sum": {"train.schedule": "temperature"},
    "mixed-examples": {"train.schedule": "mixed", "train.balancer": "examples"},
    "zipped-sum": {"train.schedule": "zipped"},
    "zipped-dynamic": {"train.schedule": "zipped", "train.balancer": "dynamic"},
    "zipped-uncertainty": {"train.schedule": "zipped", "train.balancer": "uncertainty"},
    "zipped-pcgrad": {"train.schedule": "zipped", "train.surgery": "pcgrad"},
    "zipped-cagrad": {"train.schedule": "zipped", "train.surgery": "cagrad"},
    "zipped-separate": {"train.schedule": "zipped", "train.step_mode": "separate"},
}


def main() -> None:
    args = variants_parser(__doc__, VARIANTS, "runs/multitask-bench").parse_args()
    rows, records, info = [], {}, {}
    for name in args.only:
        overrides = variant_overrides(VARIANTS[name], args)
        trainer, results, wall = run_recipe(BASE_RECIPE, overrides, f"{args.output_root}/{name}")
        best = results["best"]
        info = machine(trainer.device)
        records[name] = {"results": results, "wall_seconds": wall, "config": trainer.config.to_dict()}
        per_step = results["train_seconds"] / max(results["steps"], 1)
        rows.append([name, f"{best['sst_acc']:.3f}", f"{best['quora_acc']:.3f}", f"{best['sts_pearson']:.3f}",
                     f"{best['composite']:.3f}", results["steps"], results["examples_seen"],
                     f"{results['train_seconds']:.0f}", f"{per_step:.2f}"])
        print(f"{name}: composite {best['composite']:.4f}, {results['train_seconds']:.0f} s", flush=True)
    save_variants("multitask", args, info, records, ["schedule-balancer", "SST acc", "Quora acc", "STS r",
                  "composite", "steps", "examples", "train s/epoch", "s/step"], rows, "all-MiniLM-L6-v2 (embedded)",
                  "1 epoch, batch 32, lr 1e-4, mean pooling, seed 11711")


if __name__ == "__main__":
    main()
