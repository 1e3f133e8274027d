"""From the config to tokenized task splits: the readers' Examples become the model's Features."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Optional

from ..config import ExperimentConfig
from ..multitask import MultitaskModel, TaskFeatures, featurize
from ..tasks import TaskSpec, get_task, read_examples, register_task

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
    """The configured tasks, registering the user's custom tasks first."""
    for values in config.data.custom_tasks:
        register_task(TaskSpec.from_dict(values), replace=True)
    if not config.data.tasks:
        raise ValueError("data.tasks is empty: name at least one task")
    return [get_task(name) for name in config.data.tasks]


def load_task_splits(model: MultitaskModel, data_dir: Path, limit: Optional[int] = None,
                     splits: tuple[str, ...] = SPLITS) -> dict[str, TaskSplits]:
    """Read and tokenize every split the model's tasks have files for."""
    result = {}
    for name, spec in model.specs.items():
        features, skipped = {}, {}
        for split in splits:
            if split not in spec.files:
                continue
            read = read_examples(spec, data_dir / spec.files[split], labelled=split != "test", limit=limit)
            log.info("%s %s: %s", name, split, read.summary())
            skipped[split] = read.skipped_empty_label
            features[split] = featurize(model.tokenizer, spec, read.examples, model.encoding(name), model.max_length)
        result[name] = TaskSplits(spec, features, skipped)
    return result
