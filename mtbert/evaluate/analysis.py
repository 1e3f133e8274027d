"""Per-example dev predictions kept for analysis (``mtbert report``): each example's id, texts, gold
label, prediction and the head's raw output (logits, one logit, or a score), one JSON line each."""

from __future__ import annotations

import json
from pathlib import Path

from ..integrity import read_json_lines
from ..multitask import TaskFeatures
from .evaluator import TaskPredictions

ANALYSIS_DIR = "analysis"


def analysis_file(run_dir: Path, task: str, split: str = "dev") -> Path:
    return Path(run_dir) / ANALYSIS_DIR / f"{task}-{split}.jsonl"


def write_analysis(path: Path, features: TaskFeatures, result: TaskPredictions) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    labels = result.labels or [None] * len(result.ids)
    with open(tmp, "w", encoding="utf-8") as handle:
        for example, gold, prediction, output in zip(features.examples, labels, result.predictions,
                                                     result.outputs.tolist()):
            handle.write(json.dumps({"id": example.id, "texts": list(example.texts), "gold": gold,
                                     "prediction": prediction, "output": output}) + "\n")
    tmp.replace(path)


def read_analysis(path: Path) -> list[dict]:
    return read_json_lines(Path(path))
