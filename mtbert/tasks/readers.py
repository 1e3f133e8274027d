"""Reading and validating task files into Examples.

Files are delimited text with a header row; columns are found by header name, which copes with the
odd headers of the minBERT test files (``0 <tab> <tab> id <tab> sentence``). Rows with an empty
label are skipped and counted; anything else wrong (bytes that are not UTF-8, a quote that runs over
line ends, a missing column, a short row, an unreadable or out-of-range label, an empty text, an id
that is empty, repeated or would break a prediction file's line) stops with the file, the 1-based line
where the problem starts, and the reason. A record never spans lines: these are one-example-per-line
files, so a quoted field with a line break in it is an unclosed quote that would swallow the lines
after it.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import re
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
    """A class number, a class's name (``label_names``: ``pos`` for class 1 of [neg, pos]), or a score."""
    if spec.kind != "regression" and raw in spec.label_names:
        return spec.label_names.index(raw)
    try:
        value = float(raw)
    except ValueError:
        names = f" nor one of its label_names ({', '.join(spec.label_names)})" if spec.label_names else ""
        raise DataError(path, line, f"label {raw!r} in column {spec.label_column!r} is not a number{names}") from None
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


UNSAFE_ID = re.compile(r"[\x00-\x1f\x7f]| , ")  # control characters, or the prediction files' separator


def read_text(path: Path) -> str:
    """The file as text, or a DataError: missing, a directory, unreadable, or not UTF-8 (with the line)."""
    if not path.exists():
        raise DataError(path, 0, "file not found")
    if path.is_dir():
        raise DataError(path, 0, "is a directory, expected a data file")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(path, 0, f"cannot be read ({error.strerror or error})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        raise DataError(path, line, f"byte 0x{data[error.start]:02x} at column {column} is not UTF-8; "
                                    "save the file as UTF-8") from None


def check_id(example_id: str, path: Path, line: int, seen: dict[str, int]) -> None:
    """An id must be non-empty, unique, and unable to forge a line of a prediction file."""
    if not example_id:
        raise DataError(path, line, "empty id")
    if UNSAFE_ID.search(example_id):
        raise DataError(path, line, f"id {example_id!r} holds a control character or ' , ', which would break "
                                    "the prediction files' 'id , value' lines")
    if example_id in seen:
        raise DataError(path, line, f"id {example_id!r} repeats the id of line {seen[example_id]}")
    seen[example_id] = line


def read_examples(spec: TaskSpec, path: Union[str, Path], labelled: bool = True,
                  limit: Optional[int] = None) -> ReadResult:
    """Read ``path`` as a file of ``spec``. ``labelled=False`` reads test files (labels ignored)."""
    path = Path(path)
    text = read_text(path)
    try:
        return _parse(spec, path, text, labelled, limit)
    except csv.Error as error:  # an unclosed quote at the end of the file, a NUL byte
        raise DataError(path, getattr(error, "line", 0), f"not readable as {spec.name!r} data ({error})") from None


def _rows(text: str, delimiter: str, path: Path):
    """(first line, row) per record; a record must not span lines (see the module's docstring)."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    last = 0
    while True:
        start = last + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            if "unexpected end of data" in str(error):
                raise DataError(path, start, 'a quote (") opened here is never closed: the rest of the file would be '
                                             "read as one field") from None
            if reader.line_num > start:
                raise DataError(path, start, f'a quote (") opened here is not closed on this line: it ends inside '
                                             f"line {reader.line_num}") from None
            error.line = start  # where the record that failed began
            raise
        last = reader.line_num
        if last > start and any("\n" in field or "\r" in field for field in row):
            raise DataError(path, start, f'a quote (") opened here is not closed on this line: it runs over '
                                         f"{last - start} more line(s) (lines {start}-{last} would be read as one row)")
        yield start, row


def _parse(spec: TaskSpec, path: Path, text: str, labelled: bool, limit: Optional[int]) -> ReadResult:
    examples: list[Example] = []
    skipped = 0
    seen: dict[str, int] = {}
    reader = _rows(text, spec.delimiter, path)
    header = next(reader, (1, None))[1]
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
    for line, row in reader:
        if not row or all(not field.strip() for field in row):
            continue
        if len(row) < needed:
            separated = "tab-separated" if spec.delimiter == "\t" else f"{spec.delimiter!r}-separated"
            raise DataError(path, line, f"expected at least {needed} {separated} fields, found {len(row)}")
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
        check_id(example_id, path, line, seen)
        examples.append(Example(example_id, texts, label, line))
        if limit is not None and len(examples) >= limit:
            break
    return ReadResult(examples, skipped, path)
