"""What ``mtbert predict`` reads and writes: inputs from a task file (ids kept) or plain text (one input
per line, a tab between the two sentences of a pair), and answers as text, JSON lines or CSV."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path
from typing import Optional, Sequence, TextIO

from ..tasks import DataError, TaskSpec, read_examples
from ..tasks.readers import check_id
from .predictor import Prediction

def valid_unicode(text: str) -> bool:
    """False for text no tokenizer can encode: lone surrogates (what non-UTF-8 bytes in a command-line
    argument, or a ``\\ud800`` escape in JSON, become in Python)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


OTHER_DELIMITERS = (",", ";", "|", "\t")


def looks_like_task_file(spec: TaskSpec, first_line: str) -> bool:
    header = {name.strip() for name in first_line.rstrip("\r\n").split(spec.delimiter)}
    return all(column in header for column in spec.text_columns)


def task_files_of(text: str, specs: dict[str, TaskSpec]) -> list[str]:
    """The tasks whose files' header ``text`` begins with (Quora's and STS's columns are the same: both)."""
    first = text.split("\n", 1)[0]
    return [name for name, spec in specs.items() if first.strip() and looks_like_task_file(spec, first)]


def read_inputs(text: str, source: str, spec: Optional[TaskSpec], path: Optional[Path] = None,
                known: Sequence[TaskSpec] = ()) -> tuple[list[str], list[tuple[str, ...]]]:
    """(ids, inputs) from a task file of ``spec`` (its ids) or from plain text (line numbers as ids).
    A plain line holds one sentence, or two separated by a tab; blank lines are skipped. A first line that
    is a task file's header (of ``spec``, or of ``known`` tasks) is never read as a sentence."""
    lines = text.splitlines()
    if spec is not None and path is not None and lines and looks_like_task_file(spec, lines[0]):
        examples = read_examples(spec, path, labelled=False).examples
        if not examples:
            raise DataError(path, 1, f"a header of task {spec.name!r}'s columns and no examples after it")
        return [e.id for e in examples], [e.texts for e in examples]
    if spec is not None and lines:
        for delimiter in OTHER_DELIMITERS:
            header = {name.strip() for name in lines[0].split(delimiter)}
            if delimiter != spec.delimiter and all(column in header for column in spec.text_columns):
                raise DataError(source, 1, f"a header of task {spec.name!r}'s columns separated by {delimiter!r}, "
                                           f"but its files are separated by {spec.delimiter!r}: save it with "
                                           f"{spec.delimiter!r} between the columns")
    if lines and lines[0].split("\t", 1)[0].strip().lower() == "id":
        names = ", ".join(s.name for s in known) or "this model's"
        raise DataError(source, 1, f"a header ({lines[0].strip()[:60]!r}), but not of a task file of {names}: give "
                                   "--task, or remove the header to predict each line as plain text")
    ids, inputs, seen = [], [], {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parts = tuple(part.strip() for part in line.split("\t"))
        if len(parts) > 2 or not all(parts):
            raise DataError(source, number, "expected one sentence, or two separated by one tab")
        check_id(str(number), Path(source), number, seen)
        ids.append(str(number))
        inputs.append(parts)
    if not inputs:
        raise DataError(source, 0, "no input: give one sentence (or a tab-separated pair) per line")
    return ids, inputs


def write_answers(out: TextIO, fmt: str, ids: Sequence[str], inputs: Sequence[tuple[str, ...]],
                  answers: dict[str, list[Prediction]], specs: dict[str, TaskSpec]) -> None:
    """One line (or CSV row) per input, every task's answer on it."""
    if fmt == "json":
        for i, (example_id, texts) in enumerate(zip(ids, inputs)):
            row = {"id": example_id, "inputs": list(texts)}
            row.update({task: predictions[i].to_dict() for task, predictions in answers.items()})
            for value in row.values():
                if isinstance(value, dict):
                    value.pop("task", None)
            out.write(json.dumps(json_safe(row), ensure_ascii=False, allow_nan=False) + "\n")
        return
    if fmt == "csv":
        pairs = max(len(t) for t in inputs) == 2
        header = ["id", "text"] + (["text_pair"] if pairs else [])
        for task, spec in specs.items():
            header += [f"{task}_score"] if spec.kind == "regression" else (
                [f"{task}_label"] + [f"{task}_p_{column_name(name)}" for name in spec.labels])
        writer = csv.writer(out)
        writer.writerow(header)
        for i, (example_id, texts) in enumerate(zip(ids, inputs)):
            row = [example_id, *texts] + ([""] if pairs and len(texts) == 1 else [])
            for task, spec in specs.items():
                answer = answers[task][i]
                row += [f"{answer.score:.4f}"] if spec.kind == "regression" else (
                    [answer.label] + [f"{answer.probabilities[name]:.4f}" for name in spec.labels])
            writer.writerow(row)
        return
    for i, (example_id, texts) in enumerate(zip(ids, inputs)):
        parts = [describe(answers[task][i]) for task in answers]
        shown = " | ".join(texts)
        out.write(f"{example_id}\t{'  '.join(parts)}\t{shown}\n")


def column_name(label: str) -> str:
    """A label as part of a CSV column name: no spaces or punctuation (``very negative`` -> ``very_negative``)."""
    return re.sub(r"[^0-9A-Za-z]+", "_", label).strip("_") or "label"


def json_safe(value):
    """``value`` with every non-finite float as null: JSON has no NaN, and a bare ``NaN`` breaks its readers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def describe(answer: Prediction) -> str:
    if answer.score is not None:
        return f"{answer.task}: {answer.score:.2f}"
    return f"{answer.task}: {answer.label} ({answer.probabilities[answer.label]:.2f})"


def read_stream(stream: TextIO, source: str) -> str:
    try:
        return stream.read()
    except UnicodeDecodeError as error:
        raise DataError(source, 0, f"not UTF-8 ({error.reason})") from None
