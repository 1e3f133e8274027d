"""The single-task sentiment classifier, measured: SST-5 and CFIMDB, frozen encoder and fine-tuned,
with the embedded all-MiniLM-L6-v2, beside the minBERT handout's bert-base references.

    python benchmarks/sentiment.py [--only sst-frozen ...] [--set key=value ...]
    python benchmarks/sentiment.py --table     # reprint the table from benchmarks/results/sentiment.json

Runs recipes/{sst,cfimdb}-{frozen,finetune}.yaml from scratch and prints the README table. The
reference column is quoted from the handout (bert-base, its own hyper-parameters), not measured here.
"""

from __future__ import annotations

import argparse
import json

from common import RECIPES, RESULTS, machine, markdown_table, run_recipe, save

RUNS = ["sst-frozen", "sst-finetune", "cfimdb-frozen", "cfimdb-finetune"]
HANDOUT_REFERENCE = {"sst-frozen": 0.390, "sst-finetune": 0.515, "cfimdb-frozen": 0.780, "cfimdb-finetune": 0.966}


def table(records: dict) -> str:
    rows = []
    for name, record in records.items():
        config = record["config"]
        task = config["data"]["tasks"][0]
        rows.append([task.upper(), name.split("-")[1], f"{record['results']['best'][f'{task}_acc']:.3f}",
                     f"{HANDOUT_REFERENCE[name]:.3f}", config["train"]["epochs"], config["train"]["lr"],
                     config["model"]["max_length"]])
    return markdown_table(["task", "mode", "dev acc (ours, MiniLM-L6)", "handout (bert-base)", "epochs", "lr",
                           "max tokens"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", choices=RUNS, default=RUNS)
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--output-root", default="runs/sentiment-bench")
    parser.add_argument("--table", action="store_true", help="reprint the saved table, run nothing")
    args = parser.parse_args()
    if args.table:
        saved = json.loads((RESULTS / "sentiment.json").read_text())
        print(f"Machine: {saved['machine']['device']}; model all-MiniLM-L6-v2 (embedded)\n")
        print(table(saved["runs"]))
        return
    records, info = {}, {}
    for name in args.only:
        trainer, results, wall = run_recipe(RECIPES / f"{name}.yaml", args.set, f"{args.output_root}/{name}")
        info = machine(trainer.device)
        records[name] = {"results": results, "wall_seconds": wall, "config": trainer.config.to_dict()}
        print(f"{name}: {results['best']}, {wall:.0f} s", flush=True)
    text = table(records)
    print(f"\nMachine: {info.get('device')}; model all-MiniLM-L6-v2 (embedded)\n")
    print(text)
    save("sentiment", {"machine": info, "runs": records, "table": text, "reference": HANDOUT_REFERENCE})


if __name__ == "__main__":
    main()
