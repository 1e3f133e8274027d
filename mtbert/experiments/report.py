"""``mtbert report RUN_DIR``: one self-contained HTML page (figures embedded as PNG data) plus the
PNG files, from what a run leaves behind: metrics.jsonl (curves), analysis/<task>-dev.jsonl (the best
model's dev predictions: confusion matrices, per-class precision/recall/F1, the STS scatter and
distributions, the most confident mistakes), config.yaml, parameters.json and results.json.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
from pathlib import Path
from typing import Optional

import numpy as np
import yaml

from ..bert import CheckpointError
from ..config import read_yaml_mapping
from ..evaluate import analysis_file, read_analysis
from ..integrity import read_json
from ..tasks import TaskSpec
from ..train.run_log import read_metrics
from . import figures

WRONG_SHOWN = 10


def _softmax(values: np.ndarray) -> np.ndarray:
    shifted = np.exp(values - values.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def class_table(gold: list[int], predicted: list[int], labels: list[str]) -> list[dict]:
    """Precision, recall, F1 and support per class."""
    rows = []
    gold_array, predicted_array = np.asarray(gold, dtype=int), np.asarray(predicted, dtype=int)
    for index, label in enumerate(labels):
        true_positive = int(((gold_array == index) & (predicted_array == index)).sum())
        predicted_count = int((predicted_array == index).sum())
        support = int((gold_array == index).sum())
        precision = true_positive / predicted_count if predicted_count else 0.0
        recall = true_positive / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append({"label": label, "precision": precision, "recall": recall, "f1": f1, "support": support})
    return rows


def confident_mistakes(rows: list[dict], spec: TaskSpec, count: int = WRONG_SHOWN) -> list[dict]:
    """Wrong predictions the model was surest of (classification), or the largest errors (regression)."""
    if spec.kind == "regression":
        scored = [(abs(r["prediction"] - r["gold"]), r) for r in rows]
    elif spec.kind == "binary":
        scored = [(max(p, 1 - p), r) for r in rows if r["prediction"] != r["gold"]
                  for p in [1 / (1 + math.exp(-float(np.ravel(r["output"])[0])))]]
    else:
        outputs = np.asarray([r["output"] for r in rows], dtype=np.float64)
        confidence = _softmax(outputs).max(axis=1) if len(rows) else []
        scored = [(float(c), r) for c, r in zip(confidence, rows) if r["prediction"] != r["gold"]]
    scored.sort(key=lambda item: -item[0])
    return [{"score": round(s, 3), **r} for s, r in scored[:count]]


class Report:
    """Collects a run's numbers and figures; ``write`` saves the PNGs and the HTML page."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        if not (self.run_dir / "config.yaml").exists():
            raise FileNotFoundError(f"{self.run_dir} is not a run directory (no config.yaml)")
        self.config = read_yaml_mapping(self.run_dir / "config.yaml")
        self.results = self._json("results.json")
        self.parameters = self._json("parameters.json")
        description = self._json("best/mtbert.json")
        try:
            self.specs = [TaskSpec.from_dict(t) for t in description.get("tasks", [])]
        except ValueError as error:
            raise CheckpointError(f"{self.run_dir / 'best' / 'mtbert.json'}: {error}") from None
        self.train_records = read_metrics(self.run_dir, "train")
        self.dev_records = read_metrics(self.run_dir, "dev")
        self.figures: dict[str, object] = {}
        self.sections: list[str] = []

    def _json(self, name: str) -> dict:
        path = self.run_dir / name
        value = read_json(path) if path.exists() else {}
        if not isinstance(value, dict):
            raise CheckpointError(f"{path}: expected a JSON object")
        return value

    # ----- building -----------------------------------------------------------------------
    def build(self) -> "Report":
        metric_keys = sorted({k for r in self.dev_records for k in r
                              if k not in ("step", "epoch", "split", "composite", "train_loss", "lr")})
        self.figures["curves"] = figures.training_curves(self.train_records, self.dev_records, metric_keys,
                                                           (self.config.get("train") or {}).get("log_every"))
        self.sections.append(self._figure_section("Training", "curves"))
        for spec in self.specs:
            path = analysis_file(self.run_dir, spec.name)
            if path.exists():
                self.sections.append(self._task_section(spec, read_analysis(path)))
        self.sections.append(self._run_section())
        return self

    def _task_section(self, spec: TaskSpec, rows: list[dict]) -> str:
        parts = [f"<h2>{html.escape(spec.name)} (dev, {len(rows)} examples)</h2>"]
        if spec.kind == "regression":
            gold = [float(r["gold"]) for r in rows]
            predicted = [float(r["prediction"]) for r in rows]
            name = f"{spec.name}_scatter"
            self.figures[name] = figures.regression_scatter(gold, predicted, f"{spec.name}: predicted vs gold")
            parts.append(self._image(name))
        else:
            labels = [f"{i} ({name})" if name != str(i) else name for i, name in enumerate(spec.labels)]
            gold = [int(r["gold"]) for r in rows]
            predicted = [int(r["prediction"]) for r in rows]
            name = f"{spec.name}_confusion"
            self.figures[name] = figures.confusion_matrix(gold, predicted, labels, f"{spec.name}: confusion matrix")
            table = class_table(gold, predicted, labels)
            parts.append(self._image(name))
            if spec.kind == "classification":
                name = f"{spec.name}_per_class"
                self.figures[name] = figures.per_class_scores(table, f"{spec.name}: per-class scores")
                parts.append(self._image(name))
            parts.append(_table(["class", "precision", "recall", "F1", "support"],
                                [[r["label"], f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}",
                                  r["support"]] for r in table]))
        mistakes = confident_mistakes(rows, spec)
        what = "largest errors" if spec.kind == "regression" else "most confident wrong predictions"
        parts.append(f"<h3>{what}</h3>")
        parts.append(_table(["id", "text", "gold", "predicted", "confidence" if spec.kind != "regression" else "error"],
                            [[m["id"], " ‖ ".join(m["texts"]), _number(m["gold"]), _number(m["prediction"]), m["score"]]
                             for m in mistakes]))
        return "\n".join(parts)

    def _run_section(self) -> str:
        parts = ["<h2>Run</h2>"]
        results = self.results
        timing = [["steps", results.get("steps")], ["training seconds", results.get("train_seconds")],
                  ["training tokens/s", results.get("train_tokens_per_second")],
                  ["padding share", results.get("padding_share")], ["device", results.get("device")],
                  ["precision", results.get("precision")]]
        parts.append(_table(["", "value"], [[k, v] for k, v in timing if v is not None]))
        if results.get("best"):
            best = results["best"]
            parts.append("<h3>best dev evaluation</h3>")
            parts.append(_table(list(best), [[_number(v) for v in best.values()]]))
        if self.parameters:
            parts.append("<h3>parameters</h3>")
            rows = [[task, f"{v['stored']:,}", f"{v['tunable']:,}", f"{100 * v['tunable_share']:.2f}%"]
                    for task, v in self.parameters.get("tasks", {}).items()]
            model = self.parameters.get("model", {})
            rows.append(["model (all tasks)", f"{model.get('stored', 0):,}", f"{model.get('tunable', 0):,}",
                         f"{100 * model.get('tunable_share', 0):.2f}%"])
            parts.append(_table(["", "stored", "tunable", "share"], rows))
        parts.append("<h3>config</h3>")
        parts.append(f"<pre>{html.escape(yaml.safe_dump(self.config, sort_keys=False))}</pre>")
        return "\n".join(parts)

    def _figure_section(self, title: str, name: str) -> str:
        return f"<h2>{html.escape(title)}</h2>\n{self._image(name)}"

    def _image(self, name: str) -> str:
        """An image whose data ``write`` fills in; the name is escaped (a task's name comes from a config)."""
        return f'<img alt="{html.escape(name, quote=True)}" src="data:image/png;base64,{{{{{safe_name(name)}}}}}">'

    # ----- writing ------------------------------------------------------------------------
    def write(self, output: Optional[str | Path] = None) -> Path:
        """PNGs and report.html in ``output`` (default RUN_DIR/report); returns the HTML path."""
        output = Path(output) if output is not None else self.run_dir / "report"
        output.mkdir(parents=True, exist_ok=True)
        body = "\n".join(self.sections)
        for name, figure in self.figures.items():
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", dpi=110)
            (output / f"{safe_name(name)}.png").write_bytes(buffer.getvalue())
            body = body.replace(f"{{{{{safe_name(name)}}}}}", base64.b64encode(buffer.getvalue()).decode("ascii"))
            figures._pyplot().close(figure)
        title = f"mtbert report: {self.config.get('name', self.run_dir.name)}"
        page = PAGE.format(title=html.escape(title), run=html.escape(str(self.run_dir.resolve())), body=body)
        path = output / "report.html"
        path.write_text(page, encoding="utf-8")
        return path


def write_report(run_dir: str | Path, output: Optional[str | Path] = None) -> Path:
    return Report(run_dir).build().write(output)


def safe_name(name: str) -> str:
    """A figure's name as a file name and placeholder: letters, digits, '_', '-' and '.' only."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip(".") or "figure"


def _number(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if not value.is_integer() else str(int(value))  # 3.3e-05, 0.8373, 12.5
    return str(value)


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }}
img {{ max-width: 100%; display: block; margin: 0.5em 0; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }}
th {{ background: #f3f3f3; }}
pre {{ background: #f7f7f7; padding: 1em; overflow-x: auto; font-size: 0.85em; }}
</style></head>
<body><h1>{title}</h1><p>run directory: <code>{run}</code></p>
{body}
</body></html>
"""
