"""The main job, measured: run recipes/quickstart.yaml from scratch and print the README results table.

    python benchmarks/quickstart.py [--set key=value ...] [--output-dir runs/quickstart-bench] [--name quickstart]

A variant (``--set``) saves under its own ``--name`` (benchmarks/results/NAME.json), so the recipe's
own result stays.

Wall time covers everything a user waits for: loading, tokenizing, training, dev evaluation each
epoch, and writing the dev and test prediction files. The reference row is quoted, not measured here:
single-task fine-tuning of the same encoder with Hugging Face transformers (3 epochs SST, 2 Quora,
4 STS, lr 5e-5, batch 32, bf16), as reported from a Sapphire Rapids CPU with AMX (benchmarks/hf_reference.py
re-measures it).
"""

from __future__ import annotations

import argparse

from common import RECIPES, machine, markdown_table, run_recipe, save
from mtbert.tasks import composite_score

RECIPE = RECIPES / "quickstart.yaml"
REFERENCE = {"sst_acc": 0.482, "quora_acc": 0.835, "sts_pearson": 0.854}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--output-dir", default="runs/quickstart-bench")
    parser.add_argument("--name", default="quickstart", help="results file name (benchmarks/results/NAME.json)")
    args = parser.parse_args()
    trainer, results, wall = run_recipe(RECIPE, args.set, args.output_dir)
    config = trainer.config
    best = results["best"]
    reference_composite = composite_score(REFERENCE, {"sst": "accuracy", "quora": "accuracy", "sts": "pearson"})
    rows = [
        ["mtbert quickstart (one multitask model)", f"{best['sst_acc']:.3f}", f"{best['quora_acc']:.3f}",
         f"{best['sts_pearson']:.3f}", f"{best['composite']:.3f}", f"{wall / 60:.1f} min",
         f"{100 * results['padding_share']:.1f}%"],
        ["reference: 3 single-task HF runs (quoted, other machine)", f"{REFERENCE['sst_acc']:.3f}",
         f"{REFERENCE['quora_acc']:.3f}", f"{REFERENCE['sts_pearson']:.3f}", f"{reference_composite:.3f}",
         "~20 min (AMX CPU, bf16)", "51-58%"],
    ]
    info = machine(trainer.device)
    table = markdown_table(["system", "SST dev acc", "Quora dev acc", "STS dev r", "composite", "wall time",
                            "padding"], rows)
    print(f"\nMachine: {info['device']}; precision {results['precision']}; model {config.model.name}; "
          f"{config.train.epochs} epoch(s), {results['steps']} steps, {results['train_tokens_per_second']:.0f} "
          f"training tokens/s\n")
    print(table)
    save(args.name, {"machine": info, "config": config.to_dict(), "results": results, "wall_seconds": wall,
                        "table": table, "reference": REFERENCE})


if __name__ == "__main__":
    main()
