"""One study run out of a weight average of other runs (``mtbert soup``): the soup is written as the run's
best/, scored on the dev sets, and its dev and test predictions written as a training run's are.

    python benchmarks/soup_run.py --out RUN_DIR [--method uniform|greedy] RUN ...

Writes into RUN_DIR what the study reads of a run: ``best/`` (with ``soup.json``), ``results.json``,
``metrics.jsonl`` (the soup's one dev evaluation), ``predictions/`` and ``config.yaml`` (the first
ingredient's, with the soup's ingredients and method).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import yaml

from mtbert.config import resolve_data_dir
from mtbert.evaluate import evaluate_split, predict_features, prediction_file_name, write_predictions
from mtbert.experiments.soup import make_soup, model_directory
from mtbert.multitask import MultitaskModel
from mtbert.precision import resolve_precision
from mtbert.train.data import labelled_split, load_task_splits


def soup_run(ingredients: list[Path], out: Path, method: str) -> dict:
    started = time.perf_counter()
    precision = resolve_precision("auto", torch.device("cpu"))
    first = MultitaskModel.from_pretrained(model_directory(ingredients[0]))
    data = load_task_splits(first, resolve_data_dir(None, first.data_dir), splits=("dev", "test"))
    dev = labelled_split(data, "dev")

    def score(model: MultitaskModel) -> float:
        return evaluate_split(model, dev, 128, precision)[0]["composite"]

    record = make_soup(ingredients, out / "best", method, score, overwrite=True)
    soup = MultitaskModel.from_pretrained(out / "best")
    metrics, predictions = evaluate_split(soup, dev, 128, precision)
    for task, splits in data.items():
        spec = soup.specs[task]
        for split in ("dev", "test"):
            features = splits.get(split)
            if features is None or len(features) == 0:
                continue
            result = predictions[task] if split == "dev" else predict_features(soup, features, 128, precision)
            write_predictions(out / "predictions" / prediction_file_name(spec, split), spec, result.ids,
                              result.predictions)
    best = {"step": 0, "epoch": 1, "split": "dev", **metrics}
    results = {"best": best, "steps": 0, "train_seconds": round(time.perf_counter() - started, 2),
               "train_tokens_per_second": 0.0, "padding_share": 0.0, "soup": record,
               "parameters": {"model": {"stored": sum(p.numel() for p in soup.parameters())}}}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (out / "metrics.jsonl").write_text(json.dumps(best) + "\n", encoding="utf-8")
    config = yaml.safe_load((Path(ingredients[0]) / "config.yaml").read_text(encoding="utf-8"))
    config["soup"] = {"method": method, "ingredients": [str(p) for p in ingredients]}
    (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--method", choices=["uniform", "greedy"], default="uniform")
    parser.add_argument("runs", type=Path, nargs="+", help="run directories (their best/ and config.yaml)")
    args = parser.parse_args()
    print(json.dumps(soup_run(args.runs, args.out, args.method)["best"]))


if __name__ == "__main__":
    main()
