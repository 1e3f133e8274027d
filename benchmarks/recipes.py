"""The five reports' systems on one machine, model, data and budget: each recipe's CPU-scale variant
(recipes/papers/*.yaml --variant cpu: the embedded all-MiniLM-L6-v2, one epoch) and the ablations that
test each report's main claim, shrunk further to fit a session; beside each, the report's own published
dev numbers (bert-base, GPU, 5-30 epochs, most of them on all of Quora).

    python benchmarks/recipes.py [--shrink 20] [--eval-limit 600] [--only 000 000:no-smart ...]
                                 [--test-predictions] [--set key=value ...]

--test-predictions reloads each report's best-system model after its run and writes the full
leaderboard files for the three test sets to benchmarks/results/recipes/<recipe>/ (the runs themselves
predict only the first --eval-limit examples of each split).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from common import RECIPES, RESULTS, machine, run_recipe, save_variants

PAPERS = RECIPES / "papers"
RECIPE_FILES = {path.name[:3]: path for path in sorted(PAPERS.glob("*.yaml"))}
# Published dev numbers (sst, quora, sts, score); None where the report gives none.
PUBLISHED = {
    "000": (None, None, None, 0.528),          # its own score formula; per-task numbers not published
    "000:no-smart": (None, None, None, None),
    "001": (0.312, 0.584, 0.195, None),        # "adaptbefore"
    "001:smart": (0.308, 0.582, 0.202, None),
    "002": (0.484, 0.828, 0.857, 0.747),
    "002:no-shared-layer": (0.483, 0.824, 0.864, 0.746),
    "003": (0.518, 0.887, 0.896, None),        # unified model before its final per-task stage
    "003:no-pcgrad": (None, None, None, None),
    "004": (0.501, 0.867, 0.802, None),        # rrobin-full+rlayer
    "004:no-relational-layer": (0.498, 0.863, 0.762, None),   # rrobin-full
    "004:smart": (0.485, 0.850, 0.714, None),  # rrobin-full+smart
}
DEFAULT_RUNS = ["000", "000:no-smart", "001", "001:smart", "002", "003", "004", "004:no-relational-layer",
                "004:smart"]


def published_composite(sst, quora, sts, score):
    if score is not None:
        return score
    return (sst + quora + (sts + 1) / 2) / 3 if None not in (sst, quora, sts) else None


def fmt(value) -> str:
    return "—" if value is None else f"{value:.3f}"


def write_test_predictions(trainer, run_dir: Path, recipe: str) -> Path:
    """The best model's predictions on every full test set, in the leaderboard format."""
    from mtbert.evaluate import predict_features, prediction_file_name, write_predictions
    from mtbert.multitask import MultitaskModel
    from mtbert.train.data import load_task_splits

    model = MultitaskModel.from_pretrained(run_dir / "best").to(trainer.device)
    data = load_task_splits(model, trainer.config.resolved_data_dir(), None, splits=("test",))
    target = RESULTS / "recipes" / recipe
    shutil.rmtree(target, ignore_errors=True)
    for task, splits in data.items():
        features = splits.get("test")
        result = predict_features(model, features, 128, trainer.precision)
        write_predictions(target / prediction_file_name(features.spec, "test"), features.spec, result.ids,
                          result.predictions)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", default=DEFAULT_RUNS, help="report number, or number:ablation")
    parser.add_argument("--shrink", type=int, default=20)
    parser.add_argument("--eval-limit", type=int, default=600)
    parser.add_argument("--test-predictions", action="store_true")
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--output-root", default="runs/recipes-bench")
    args = parser.parse_args()
    rows, records, info = [], {}, {}
    for key in args.only:
        number, _, ablation = key.partition(":")
        recipe = RECIPE_FILES[number]
        variants = ["cpu", ablation] if ablation else ["cpu"]
        overrides = [f"data.shrink={args.shrink}", f"data.eval_limit={args.eval_limit}", "train.checkpoint_every=0",
                     "train.tensorboard=false", *args.set]
        run_dir = Path(args.output_root) / key.replace(":", "-")
        trainer, results, wall = run_recipe(recipe, overrides, run_dir, variants)
        info = machine(trainer.device)
        best = results["best"]
        records[key] = {"recipe": recipe.name, "variants": variants, "results": results, "wall_seconds": wall,
                        "config": trainer.config.to_dict(), "published": PUBLISHED.get(key)}
        if args.test_predictions and not ablation:
            records[key]["test_predictions"] = str(write_test_predictions(trainer, run_dir, recipe.stem)
                                                   .relative_to(RESULTS.parent.parent))
        published = PUBLISHED.get(key) or (None, None, None, None)
        rows.append([f"{recipe.stem}" + (f" − {ablation}" if ablation else ""), f"{best['sst_acc']:.3f}",
                     f"{best['quora_acc']:.3f}", f"{best['sts_pearson']:.3f}", f"{best['composite']:.3f}",
                     f"{wall / 60:.1f} min", " / ".join(fmt(v) for v in published[:3]),
                     fmt(published_composite(*published))])
        print(rows[-1], flush=True)
    save_variants("recipes", args, info, records, ["recipe (− ablation)", "SST acc", "Quora acc", "STS r",
                  "composite", "wall", "report: SST / Quora / STS", "report: composite"], rows,
                  "all-MiniLM-L6-v2 (embedded)", "each recipe's cpu variant, 1 epoch, seed 11711. Report columns: "
                  "the reports' published dev numbers (bert-base, GPU, full data, 5-30 epochs)")


if __name__ == "__main__":
    main()
