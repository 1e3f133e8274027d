"""Parameter accounting (report 003's table): per task, the parameters its predictions use (stored)
and those that train (tunable); for the model, the total and what that many separate single-task
models would store instead."""

from __future__ import annotations

from typing import Iterable

from torch import nn


def _tunable(name: str, param: nn.Parameter, masks: dict) -> int:
    if not param.requires_grad:
        return 0
    return int(masks[name].sum()) if name in masks else param.numel()


def _count(named: Iterable[tuple[str, nn.Parameter]], masks: dict) -> tuple[int, int]:
    stored = tunable = 0
    seen = set()
    for name, param in named:
        if id(param) in seen:
            continue
        seen.add(id(param))
        stored += param.numel()
        tunable += _tunable(name, param, masks)
    return stored, tunable


def parameter_accounting(model) -> dict:
    """Counts for a MultitaskModel: ``tasks`` (per task: stored, tunable, task_specific), ``model``
    (all distinct parameters) and ``separate_models`` (the sum of the tasks' stored counts)."""
    masks = {f"encoder.{name}": mask for name, mask in model.selection.items()}
    shared = [(f"encoder.{n}", p) for n, p in model.encoder.named_parameters()]
    shared += [(f"shared.{n}", p) for n, p in model.shared.named_parameters()]
    for name, method in model.peft.items():
        if not method.per_task:
            shared += [(f"peft.{name}", p) for p in method.parameters()]
    tasks = {}
    for task in model.specs:
        own = [(f"heads.{task}.{n}", p) for n, p in model.heads[task].named_parameters()]
        own += [(f"peft.{name}", p) for name, method in model.peft.items() if method.per_task
                for p in method.parameters_for(task)]
        stored, tunable = _count(shared + own, masks)
        tasks[task] = {"stored": stored, "tunable": tunable, "tunable_share": tunable / stored if stored else 0.0,
                       "task_specific": _count(own, masks)[0]}
    stored, tunable = _count(model.named_parameters(), masks)
    return {
        "tasks": tasks,
        "model": {"stored": stored, "tunable": tunable, "tunable_share": tunable / stored if stored else 0.0},
        "separate_models": {"stored": sum(t["stored"] for t in tasks.values()),
                            "tunable": sum(t["tunable"] for t in tasks.values())},
    }


def format_accounting(counts: dict) -> str:
    """The table the trainer logs at the start of a run."""
    rows = [("", "stored", "tunable", "share", "task-specific")]
    for task, values in counts["tasks"].items():
        rows.append((task, _millions(values["stored"]), _millions(values["tunable"]),
                     f"{100 * values['tunable_share']:.2f}%", _millions(values["task_specific"])))
    model = counts["model"]
    rows.append(("model (all tasks)", _millions(model["stored"]), _millions(model["tunable"]),
                 f"{100 * model['tunable_share']:.2f}%", ""))
    separate = counts["separate_models"]
    rows.append((f"{len(counts['tasks'])} separate models", _millions(separate["stored"]),
                 _millions(separate["tunable"]), "", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    return "\n".join("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
                     for row in rows)


def _millions(count: int) -> str:
    return f"{count / 1e6:.3f}M" if count >= 1000 else str(count)
