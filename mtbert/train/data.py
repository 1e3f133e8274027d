"""From the config to tokenized task splits: the readers' Examples become the model's Features."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Optional

import torch

from ..config import ExperimentConfig
from ..multitask import MultitaskModel, TaskFeatures, featurize
from ..multitask.augmentation import Augmentation
from ..tasks import DataError, TaskSpec, get_task, read_examples, register_task

log = logging.getLogger("mtbert")
SPLITS = ("train", "dev", "test")


@dataclasses.dataclass
class TaskSplits:
    spec: TaskSpec
    splits: dict[str, TaskFeatures]
    skipped: dict[str, int]

    def get(self, split: str) -> Optional[TaskFeatures]:
        return self.splits.get(split)


def labelled_split(data: dict[str, TaskSplits], split: str) -> dict[str, TaskFeatures]:
    """Each task's ``split`` where it exists and has labels; other tasks are left out of scoring."""
    features = {task: splits.get(split) for task, splits in data.items()}
    return {task: f for task, f in features.items() if f is not None and f.labels is not None}


def task_specs(config: ExperimentConfig) -> list[TaskSpec]:
    """The configured tasks, registering the user's custom tasks first: a classification or binary task
    whose training labels are words (``pos``, ``neg``) and that names no ``label_names`` takes them, sorted,
    from its training file, and they are saved with the model."""
    for values in config.data.custom_tasks:
        spec = TaskSpec.from_dict(values)
        if spec.kind != "regression" and not spec.label_names and "train" in spec.files:
            spec = with_label_names_from_data(spec, Path(config.data.dir or ".") / spec.files["train"])
        register_task(spec, replace=True)
    if not config.data.tasks:
        raise ValueError("data.tasks is empty: name at least one task")
    return [get_task(name) for name in config.data.tasks]


def with_label_names_from_data(spec: TaskSpec, path: Path) -> TaskSpec:
    """``spec`` with the label set of its training file as its names, when those labels are not numbers."""
    import csv

    if not path.is_file():
        return spec
    with open(path, encoding="utf-8", errors="replace", newline="") as handle:
        rows = csv.DictReader(handle, delimiter=spec.delimiter)
        raw = {(row.get(spec.label_column) or "").strip() for row in rows} - {""}
    if not raw or all(is_number(value) for value in raw):
        return spec
    names = tuple(sorted(raw))
    if spec.kind == "binary" and len(names) != 2:
        raise DataError(path, 0, f"task {spec.name!r} is binary but its labels are {len(names)} words "
                                 f"({', '.join(names[:6])}): give label_names, or make it a classification task")
    count = len(names) if spec.kind == "classification" else 2
    log.info("%s: labels %s read from %s (class 0 to %d, in sorted order)", spec.name, ", ".join(names), path.name,
             count - 1)
    return dataclasses.replace(spec, label_names=names, num_labels=count if spec.kind == "classification" else 2)


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def shrink_examples(examples: list, shrink: int, seed: int) -> list:
    """A seeded random 1/M of the examples (at least one), in file order (report 000's shrink factor M)."""
    if shrink < 1:
        raise ValueError(f"data.shrink must be a whole number >= 1, not {shrink}")
    if shrink == 1 or not examples:
        return examples
    keep = max(1, len(examples) // shrink)
    chosen = torch.randperm(len(examples), generator=torch.Generator().manual_seed(seed)).tolist()[:keep]
    return [examples[i] for i in sorted(chosen)]


def load_task_splits(model: MultitaskModel, data_dir: Path, limit: Optional[int] = None,
                     splits: tuple[str, ...] = SPLITS, shrink: int = 1, seed: int = 0,
                     tasks: Optional[list[str]] = None, eval_limit: Optional[int] = None) -> dict[str, TaskSplits]:
    """Read and tokenize every split the model's tasks (or ``tasks`` of them) have files for; ``shrink``
    thins the training sets; ``eval_limit`` (when given) replaces ``limit`` for the dev and test splits."""
    result = {}
    for name, spec in model.specs.items():
        if tasks is not None and name not in tasks:
            continue
        features, skipped = {}, {}
        for split in splits:
            if split not in spec.files:
                continue
            split_limit = limit if split == "train" or eval_limit is None else eval_limit
            read = read_examples(spec, data_dir / spec.files[split], labelled=split != "test", limit=split_limit)
            log.info("%s %s: %s", name, split, read.summary())
            skipped[split] = read.skipped_empty_label
            examples = read.examples
            if split != "test" and not examples:
                raise DataError(read.path, 0, f"no labelled examples ({read.skipped_empty_label} with an empty label): "
                                              f"task {name!r} cannot {'train' if split == 'train' else 'be scored'} on it")
            if split == "train" and shrink != 1:
                examples = shrink_examples(examples, shrink, seed)
                log.info("%s train: kept %d of %d examples (shrink factor %d)", name, len(examples),
                         len(read.examples), shrink)
            features[split] = model.featurize(name, examples)
        result[name] = TaskSplits(spec, features, skipped)
    return result


def load_augmentation_splits(model: MultitaskModel, augmentations: list[Augmentation], data_dir: Path,
                             limit: Optional[int] = None, shrink: int = 1, seed: int = 0) -> dict[str, TaskSplits]:
    """Each augmentation's training examples: its source task's training file, filtered, tokenized for
    the way its loss encodes them. No dev or test split: augmentations are never scored."""
    result = {}
    for augmentation in augmentations:
        if augmentation.head_task not in model.heads:
            raise ValueError(f"augmentation {augmentation.name!r} trains the {augmentation.head_task!r} head; "
                             f"add {augmentation.head_task!r} to data.tasks")
        spec = augmentation.spec()
        read = read_examples(spec, data_dir / spec.files["train"], labelled=True, limit=limit)
        examples = shrink_examples([e for e in read.examples if augmentation.keep(e)], shrink, seed)
        log.info("%s (from %s train): %d of %d examples kept", spec.name, augmentation.source_task, len(examples),
                 len(read.examples))
        features = featurize(model.tokenizer, spec, examples, augmentation.encoding, model.max_length)
        result[spec.name] = TaskSplits(spec, {"train": features}, {"train": read.skipped_empty_label})
    return result
