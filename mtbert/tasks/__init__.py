"""What a task is: specs and their registry, readers, heads, losses and metrics. Never imports the trainer."""

from .heads import (HEADS, POOLINGS, HeadContext, HeadOutput, SharedLayers, TaskHead, build_head, default_head_name,
                    register_head, register_pooling)
from .losses import (DEFAULT_LOSS, LOSSES, L2Penalty, SymmetricKL, build_task_loss, get_loss,
                     predictions_from_outputs, register_loss)
from .metrics import METRICS, composite_score, metric_key
from .readers import DataError, Example, ReadResult, read_examples
from .spec import TASKS, TaskSpec, get_task, register_task

__all__ = [
    "DEFAULT_LOSS", "DataError", "Example", "HEADS", "HeadContext", "HeadOutput", "L2Penalty", "LOSSES", "METRICS",
    "POOLINGS", "ReadResult", "SharedLayers", "SymmetricKL", "TASKS", "TaskHead", "TaskSpec", "build_head",
    "build_task_loss", "composite_score", "default_head_name", "get_loss", "get_task", "metric_key",
    "predictions_from_outputs", "read_examples", "register_head", "register_loss", "register_pooling",
    "register_task",
]
