"""``mtbert compare RUN_DIR...``: one table of runs — the config fields that differ between them, each
run's best dev metrics and composite, and its training time — as text, and as HTML with ``--html``."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Optional

import yaml

from ..train.run_log import read_metrics

IGNORED = ("output_dir", "train.progress", "data.dir")  # where a run was written, not what it was


def flatten(values: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(values, dict) and values:
        flat = {}
        for key, value in values.items():
            flat.update(flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): values}


def collect(run_dirs: list[str | Path]) -> tuple[list[str], list[dict]]:
    """(differing config fields, one row per run)."""
    runs = []
    for run_dir in map(Path, run_dirs):
        config_file = run_dir / "config.yaml"
        if not config_file.exists():
            raise FileNotFoundError(f"{run_dir} is not a run directory (no config.yaml)")
        config = flatten(yaml.safe_load(config_file.read_text(encoding="utf-8")))
        results_file = run_dir / "results.json"
        results = json.loads(results_file.read_text(encoding="utf-8")) if results_file.exists() else {}
        dev = read_metrics(run_dir, "dev")
        best = results.get("best") or (max(dev, key=lambda r: r["composite"]) if dev else {})
        runs.append({"run": str(run_dir), "config": config, "best": best, "results": results})
    keys = sorted({k for run in runs for k in run["config"]})
    differing = [k for k in keys if k not in IGNORED and len({json.dumps(r["config"].get(k), sort_keys=True)
                                                               for r in runs}) > 1]
    metrics = sorted({k for run in runs for k in run["best"]} - {"step", "epoch", "split", "train_loss", "lr", "composite"})
    rows = []
    for run in runs:
        row = {"run": run["run"], **{k: run["config"].get(k) for k in differing}}
        row.update({k: run["best"].get(k) for k in metrics})
        row["composite"] = run["best"].get("composite")
        row["train_seconds"] = run["results"].get("train_seconds")
        row["finished"] = bool(run["results"])
        rows.append(row)
    return differing, rows


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return "" if value is None else str(value)


def format_text(rows: list[dict]) -> str:
    header = list(rows[0])
    table = [header] + [[_cell(row[k]) for k in header] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)) for line in table)


def format_html(rows: list[dict], differing: list[str]) -> str:
    header = "".join(f"<th>{html.escape(k)}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row.values()) + "</tr>"
                   for row in rows)
    note = (f"<p>config fields that differ: {html.escape(', '.join(differing))}</p>" if differing
            else "<p>the runs' configs are the same</p>")
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>mtbert compare</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:.25em .6em}th{background:#f3f3f3}</style></head>"
            f"<body><h1>mtbert compare</h1>{note}<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody>"
            "</table></body></html>\n")


def compare(run_dirs: list[str | Path], html_path: Optional[str | Path] = None) -> str:
    differing, rows = collect(run_dirs)
    if html_path is not None:
        Path(html_path).parent.mkdir(parents=True, exist_ok=True)
        Path(html_path).write_text(format_html(rows, differing), encoding="utf-8")
    return format_text(rows)
