"""Reading and validating task files into Examples.

Files are delimited text with a header row; columns are found by header name, which copes with the
odd headers of the minBERT test files (``0 <tab> <tab> id <tab> sentence``). Rows with an empty
label are skipped and counted; anything else wrong (a missing column, a short row, an unreadable or
out-of-range label, an empty text) stops with the file, the line and the reason.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import sys
from pathlib import Path
from typing import Optional, Union

from .spec import TaskSpec

Label = Union[int, float]
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # CFIMDB reviews exceed csv's 128 KiB default


class DataError(ValueError):
    """A problem in a data file, with the file and line it was found on."""

    def __init__(self, path: Union[str, Path], line: int, problem: str):
        """``line`` is 1-based; 0 means the problem is with the file as a whole."""
        self.path, self.line, self.problem = str(path), line, problem
        super().__init__(f"{path}, line {line}: {problem}" if line else f"{path}: {problem}")


@dataclasses.dataclass(frozen=True)
class Example:
    id: str
    texts: tuple[str, ...]
    label: Optional[Label]
    line: int


@dataclasses.dataclass
class ReadResult:
    examples: list[Example]
    skipped_empty_label: int
    path: Path

    def summary(self) -> str:
        skipped = f", skipped {self.skipped_empty_label} with empty label" if self.skipped_empty_label else ""
        return f"{self.path.name}: {len(self.examples)} examples{skipped}"


def parse_label(spec: TaskSpec, raw: str, path: Path, line: int) -> Label:
    try:
        value = float(raw)
    except ValueError:
        raise DataError(path, line, f"label {raw!r} in column {spec.label_column!r} is not a number") from None
    if not math.isfinite(value):
        raise DataError(path, line, f"label {raw!r} is not finite")
    if spec.kind == "regression":
        low, high = spec.label_range
        if not low <= value <= high:
            raise DataError(path, line, f"label {value:g} is outside task {spec.name!r}'s range [{low:g}, {high:g}]")
        return value
    classes = spec.num_labels if spec.kind == "classification" else 2
    if value != int(value) or not 0 <= value < classes:
        raise DataError(path, line, f"label {raw!r} is not a class of task {spec.name!r} (0..{classes - 1})")
    return int(value)


def read_examples(spec: TaskSpec, path: Union[str, Path], labelled: bool = True,
                  limit: Optional[int] = None) -> ReadResult:
    """Read ``path`` as a file of ``spec``. ``labelled=False`` reads test files (labels ignored)."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, 0, f"file not found (task {spec.name!r}; set data.dir or MTBERT_DATA_DIR)")
    examples: list[Example] = []
    skipped = 0
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter=spec.delimiter)
        header = next(reader, None)
        if header is None:
            raise DataError(path, 1, "file is empty: expected a header row")
        columns = {name.strip(): i for i, name in enumerate(header) if name.strip()}
        wanted = list(spec.text_columns) + ([spec.label_column] if labelled else [])
        wanted += [spec.id_column] if spec.id_column else []
        missing = [c for c in wanted if c not in columns]
        if missing:
            raise DataError(path, 1, f"missing column(s) {', '.join(map(repr, missing))}; the header has "
                                     f"{', '.join(map(repr, columns)) or 'no named columns'}")
        needed = max(columns[c] for c in wanted) + 1
        for row in reader:
            line = reader.line_num
            if not row or all(not field.strip() for field in row):
                continue
            if len(row) < needed:
                raise DataError(path, line, f"expected at least {needed} tab-separated fields, found {len(row)}")
            label: Optional[Label] = None
            if labelled:
                raw = row[columns[spec.label_column]].strip()
                if not raw:
                    skipped += 1
                    continue
                label = parse_label(spec, raw, path, line)
            texts = tuple(row[columns[c]].strip() for c in spec.text_columns)
            for column, text in zip(spec.text_columns, texts):
                # A test row must still be predicted, so only labelled rows are refused for it.
                if not text and labelled:
                    raise DataError(path, line, f"empty text in column {column!r}")
            example_id = row[columns[spec.id_column]].strip() if spec.id_column else str(len(examples))
            examples.append(Example(example_id, texts, label, line))
            if limit is not None and len(examples) >= limit:
                break
    return ReadResult(examples, skipped, path)
