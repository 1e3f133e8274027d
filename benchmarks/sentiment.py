"""The single-task sentiment classifier, measured: SST-5 and CFIMDB, frozen encoder and fine-tuned,
with the embedded all-MiniLM-L6-v2, beside the minBERT handout's bert-base references.

    python benchmarks/sentiment.py [--only sst-frozen ...] [--set key=value ...]

Runs recipes/{sst,cfimdb}-{frozen,finetune}.yaml from scratch and prints the README table. The
reference column is quoted from the handout (bert-base, its own hyper-parameters), not measured here.
"""

from __future__ import annotations

import argparse

from common import RECIPES, machine, markdown_table, run_recipe, save

RUNS = ["sst-frozen", "sst-finetune", "cfimdb-frozen", "cfimdb-finetune"]
HANDOUT_REFERENCE = {"sst-frozen": 0.390, "sst-finetune": 0.515, "cfimdb-frozen": 0.780, "cfimdb-finetune": 0.966}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", choices=RUNS, default=RUNS)
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--output-root", default="runs/sentiment-bench")
    args = parser.parse_args()
    rows, records, info = [], {}, {}
    for name in args.only:
        trainer, results, wall = run_recipe(RECIPES / f"{name}.yaml", args.set, f"{args.output_root}/{name}")
        task = trainer.config.data.tasks[0]
        accuracy = results["best"][f"{task}_acc"]
        info = machine(trainer.device)
        records[name] = {"results": results, "wall_seconds": wall, "config": trainer.config.to_dict()}
        rows.append([task.upper(), name.split("-")[1], f"{accuracy:.3f}", f"{HANDOUT_REFERENCE[name]:.3f}",
                     trainer.config.train.epochs, trainer.config.train.lr, f"{wall / 60:.1f} min",
                     f"{results['train_tokens_per_second']:.0f}"])
        print(f"{name}: dev accuracy {accuracy:.4f}, {wall:.0f} s", flush=True)
    table = markdown_table(["task", "mode", "dev acc (ours, MiniLM-L6)", "handout (bert-base)", "epochs", "lr",
                            "wall time", "train tok/s"], rows)
    print(f"\nMachine: {info.get('device')}; model all-MiniLM-L6-v2 (embedded); precision "
          f"{records[args.only[-1]]['results']['precision']}\n")
    print(table)
    save("sentiment", {"machine": info, "runs": records, "table": table, "reference": HANDOUT_REFERENCE})


if __name__ == "__main__":
    main()
