"""What a task is: its files, columns, label kind and metric; and the registry of known tasks.

Built-in tasks are the CS224N minBERT files; a user's own CSV/TSV task is described by the same
fields in the config (``data.custom_tasks``) and registered at start-up.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Optional

KINDS = ("classification", "binary", "regression")


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    name: str
    kind: str
    text_columns: tuple[str, ...]
    label_column: str
    files: dict  # split name ("train", "dev", "test") -> file name, relative to data.dir
    num_labels: int = 2
    label_range: tuple[float, float] = (0.0, 1.0)
    id_column: Optional[str] = "id"
    delimiter: str = "\t"
    metric: str = ""
    # Leaderboard output: file prefix and header column, as the CS224N scripts name them.
    output_prefix: str = ""
    output_column: str = "Predicted"
    # What each class means, in class order (classification: num_labels names; binary: two); saved with
    # the model so that predictions can say "very positive" rather than 4. Empty: the class numbers.
    label_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"task {self.name!r}: kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if not 1 <= len(self.text_columns) <= 2:
            raise ValueError(f"task {self.name!r}: one or two text columns, not {len(self.text_columns)}")
        if self.kind == "classification" and self.num_labels < 2:
            raise ValueError(f"task {self.name!r}: a classification task needs num_labels >= 2")
        if self.kind == "regression" and not self.label_range[0] < self.label_range[1]:
            raise ValueError(f"task {self.name!r}: label_range must be (low, high) with low < high")
        if not self.metric:
            object.__setattr__(self, "metric", "pearson" if self.kind == "regression" else "accuracy")
        if not self.output_prefix:
            object.__setattr__(self, "output_prefix", self.name)
        object.__setattr__(self, "text_columns", tuple(self.text_columns))
        object.__setattr__(self, "label_range", tuple(float(x) for x in self.label_range))
        object.__setattr__(self, "label_names", tuple(str(x) for x in self.label_names))
        classes = {"classification": self.num_labels, "binary": 2}.get(self.kind, 0)
        if self.label_names and len(self.label_names) != classes:
            raise ValueError(f"task {self.name!r}: label_names must name its {classes} classes, not "
                             f"{len(self.label_names)}" if classes else f"task {self.name!r}: a regression task has "
                             "no label_names (its scores lie in label_range)")

    @property
    def is_pair(self) -> bool:
        return len(self.text_columns) == 2

    @property
    def labels(self) -> tuple[str, ...]:
        """The class names (the class numbers when none were given); empty for a regression task."""
        classes = {"classification": self.num_labels, "binary": 2}.get(self.kind, 0)
        return self.label_names or tuple(str(i) for i in range(classes))

    @property
    def output_dim(self) -> int:
        return self.num_labels if self.kind == "classification" else 1

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["text_columns"] = list(self.text_columns)
        values["label_range"] = list(self.label_range)
        values["label_names"] = list(self.label_names)
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "TaskSpec":
        """A spec from a config's ``data.custom_tasks`` entry (or a saved model's), every problem named."""
        if not isinstance(values, dict):
            raise ValueError(f"a custom task must be a mapping of its fields, not {values!r}")
        fields = dataclasses.fields(cls)
        known = {f.name for f in fields}
        name = values.get("name", "?")
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"task {name!r}: unknown fields {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        required = [f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [field for field in required if field not in values]
        if missing:
            raise ValueError(f"task {name!r}: missing field(s) {', '.join(missing)} (a custom task needs "
                             f"{', '.join(required)})")
        values = dict(values)
        for field, kind in (("name", str), ("kind", str), ("label_column", str), ("delimiter", str), ("files", dict),
                            ("text_columns", (list, tuple)), ("num_labels", int), ("label_names", (list, tuple))):
            if field in values and not isinstance(values[field], kind):
                raise ValueError(f"task {name!r}: {field} has the wrong type ({values[field]!r})")
        if not TASK_NAME.match(values["name"]):
            raise ValueError(f"task name {values['name']!r}: use letters, digits, '_' and '-', starting with a letter")
        if len(values.get("delimiter", "\t")) != 1:  # left out: a tab, the dataclass's default
            raise ValueError(f"task {name!r}: delimiter must be one character, not {values['delimiter']!r}")
        values["text_columns"] = tuple(values.get("text_columns", ()))
        if "label_names" in values:
            values["label_names"] = tuple(values["label_names"])
        if "label_range" in values:
            if not isinstance(values["label_range"], (list, tuple)) or len(values["label_range"]) != 2:
                raise ValueError(f"task {name!r}: label_range must be [low, high], not {values['label_range']!r}")
            values["label_range"] = tuple(values["label_range"])
        return cls(**values)


TASKS: dict[str, TaskSpec] = {}
TASK_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")  # it names files, metrics and HTML ids


def register_task(spec: TaskSpec, replace: bool = False) -> TaskSpec:
    if spec.name in TASKS and not replace and TASKS[spec.name] != spec:
        raise ValueError(f"task {spec.name!r} is already registered with other settings")
    TASKS[spec.name] = spec
    return spec


def get_task(name: str) -> TaskSpec:
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))} "
                       "(describe your own under data.custom_tasks)")
    return TASKS[name]


def _minbert_files(stem: str) -> dict:
    return {"train": f"{stem}-train.csv", "dev": f"{stem}-dev.csv", "test": f"{stem}-test-student.csv"}


register_task(TaskSpec(
    name="sst", kind="classification", num_labels=5, text_columns=("sentence",), label_column="sentiment",
    files=_minbert_files("ids-sst"), output_prefix="sst", output_column="Predicted_Sentiment",
    label_names=("very negative", "negative", "neutral", "positive", "very positive"),
))
register_task(TaskSpec(
    name="quora", kind="binary", text_columns=("sentence1", "sentence2"), label_column="is_duplicate",
    files=_minbert_files("quora"), output_prefix="para", output_column="Predicted_Is_Paraphrase",
    label_names=("not duplicate", "duplicate"),
))
register_task(TaskSpec(
    name="sts", kind="regression", label_range=(0.0, 5.0), text_columns=("sentence1", "sentence2"),
    label_column="similarity", files=_minbert_files("sts"), output_prefix="sts",
    output_column="Predicted_Similiary",  # sic: the CS224N leaderboard's spelling
))
register_task(TaskSpec(
    name="cfimdb", kind="binary", text_columns=("sentence",), label_column="sentiment",
    files=_minbert_files("ids-cfimdb"), output_prefix="cfimdb", output_column="Predicted_Sentiment",
    label_names=("negative", "positive"),
))
