"""Prediction files in the CS224N leaderboard format: a header ``id \\t Predicted_X`` and then
``id , value`` lines, one per example, as the course's scripts write and read them."""

from __future__ import annotations

import math
from pathlib import Path

from ..tasks import TaskSpec


def prediction_file_name(spec: TaskSpec, split: str) -> str:
    return f"{spec.output_prefix}-{split}-output.csv"


def format_value(spec: TaskSpec, value: float) -> str:
    return f"{value:.4f}" if spec.kind == "regression" else str(int(value))


def write_predictions(path: Path, spec: TaskSpec, ids: list[str], predictions: list[float]) -> None:
    bad = next((i for i, value in enumerate(predictions) if not math.isfinite(value)), None)
    if bad is not None:
        raise ValueError(f"{path}: the prediction for id {ids[bad]!r} is {predictions[bad]}; the model's outputs "
                         "are not finite, so no prediction file is written")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(f"id \t {spec.output_column} \n")
        for example_id, value in zip(ids, predictions):
            handle.write(f"{example_id} , {format_value(spec, value)} \n")
    tmp.replace(path)


def read_predictions(path: Path) -> dict[str, str]:
    """Parse a leaderboard file back: id -> value string. Raises on a malformed line."""
    rows = {}
    with open(path, encoding="utf-8") as handle:
        header = handle.readline()
        if not header.startswith("id \t "):
            raise ValueError(f"{path}, line 1: not a leaderboard header: {header!r}")
        for number, line in enumerate(handle, start=2):
            parts = line.strip().split(" , ")
            if len(parts) != 2:
                raise ValueError(f"{path}, line {number}: expected 'id , value', got {line!r}")
            rows[parts[0]] = parts[1]
    return rows
