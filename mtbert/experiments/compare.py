"""``mtbert compare RUN_DIR...``: one table of runs — the config fields that differ between them, each
run's best dev metrics and composite, and its training time — as text, and as HTML with ``--html``.
With ``--by-seed`` runs that differ only in ``train.seed`` become one row of means and standard
deviations: one seed's dev score moves by as much as most changes to a recipe, so a comparison of
settings is only worth reading over several seeds."""

from __future__ import annotations

import html
import json
import statistics
from pathlib import Path
from typing import Any, Optional

import yaml

from ..config import ConfigError, load_config
from ..integrity import read_json
from ..train.run_log import read_metrics

IGNORED = ("output_dir", "train.progress", "data.dir")  # where a run was written, not what it was
SEED = "train.seed"
RUN_FIELDS = ("run", "finished")  # per-run columns that a group of seeds has no single value for


def flatten(values: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys to values; a list of named mappings (``data.custom_tasks``) by name, so that one field of
    one custom task is one column rather than the whole task as JSON."""
    if isinstance(values, list) and values and all(isinstance(v, dict) and isinstance(v.get("name"), str)
                                                   for v in values):
        values = {v["name"]: {k: x for k, x in v.items() if k != "name"} for v in values}
    if isinstance(values, dict) and values:
        flat = {}
        for key, value in values.items():
            flat.update(flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): values}


def resolved_config(config_file: Path) -> dict:
    """The run's config with today's defaults filled in, so a run saved before a field existed does not
    differ from one that has the field at its default; the file as written where it no longer loads."""
    try:
        return load_config(config_file).to_dict()
    except ConfigError:
        return yaml.safe_load(config_file.read_text(encoding="utf-8"))


def collect(run_dirs: list[str | Path], always: tuple[str, ...] = ()) -> tuple[list[str], list[dict]]:
    """(differing config fields, one row per run); the fields in ``always`` are columns even where every
    run has the same value."""
    runs = []
    for run_dir in map(Path, run_dirs):
        config_file = run_dir / "config.yaml"
        if not config_file.exists():
            raise FileNotFoundError(f"{run_dir} is not a run directory (no config.yaml)")
        config = flatten(resolved_config(config_file))
        results_file = run_dir / "results.json"
        results = read_json(results_file) if results_file.exists() else {}
        dev = read_metrics(run_dir, "dev")
        best = results.get("best") or (max(dev, key=lambda r: r["composite"]) if dev else {})
        runs.append({"run": str(run_dir), "config": config, "best": best, "results": results})
    keys = sorted({k for run in runs for k in run["config"]})
    differing = [k for k in keys if k not in IGNORED and len({json.dumps(r["config"].get(k), sort_keys=True)
                                                               for r in runs}) > 1]
    metrics = sorted({k for run in runs for k in run["best"]} - {"step", "epoch", "split", "train_loss", "lr", "composite"})
    columns = list(dict.fromkeys([*always, *differing]))
    rows = []
    for run in runs:
        row = {"run": run["run"], **{k: run["config"].get(k) for k in columns}}
        row.update({k: run["best"].get(k) for k in metrics})
        row["composite"] = run["best"].get("composite")
        row["train_seconds"] = run["results"].get("train_seconds")
        row["finished"] = bool(run["results"])
        rows.append(row)
    return differing, rows


def group_by_seed(rows: list[dict], differing: list[str]) -> list[dict]:
    """One row per setting: the runs whose differing config fields agree except ``train.seed``, in the
    order each setting first appears. Each metric (and the training time) becomes ``mean ± sd`` over
    the runs that have it, with the sample standard deviation (n - 1); the row says how many runs it
    holds, their seeds, and how many of them finished (an unfinished run counts with its best so far)."""
    settings = [k for k in differing if k != SEED]
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(json.dumps([row.get(k) for k in settings], sort_keys=True, default=str), []).append(row)
    measured = [k for k in rows[0] if k not in settings and k not in RUN_FIELDS and k != SEED]
    grouped = []
    for members in groups.values():
        summary = {k: members[0].get(k) for k in settings}
        summary["runs"] = len(members)
        summary["seeds"] = ", ".join(str(m.get(SEED)) for m in members)
        summary["finished"] = sum(bool(m["finished"]) for m in members)
        for key in measured:
            summary[key] = mean_and_sd([m[key] for m in members if isinstance(m.get(key), (int, float))])
        grouped.append(summary)
    return grouped


def mean_and_sd(values: list[float]) -> str:
    """``mean ± sd`` (sample sd), the mean alone for one value, empty for none."""
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def _cell(value: Any) -> str:
    """Scores to four decimals; small numbers (learning rates, epsilons) to three significant digits, so
    1e-4 and 5e-5 do not both read 0.0001."""
    if isinstance(value, float):
        return f"{value:.3g}" if 0 < abs(value) < 0.01 else f"{value:.4f}"
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


def compare(run_dirs: list[str | Path], html_path: Optional[str | Path] = None, by_seed: bool = False) -> str:
    differing, rows = collect(run_dirs, always=(SEED,) if by_seed else ())
    if by_seed:
        rows = group_by_seed(rows, differing)
        differing = [k for k in differing if k != SEED]
    if html_path is not None:
        Path(html_path).parent.mkdir(parents=True, exist_ok=True)
        Path(html_path).write_text(format_html(rows, differing), encoding="utf-8")
    return format_text(rows)
