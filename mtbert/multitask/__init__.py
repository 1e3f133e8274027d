"""The multitask model, features and batches, batch schedules."""

from .batching import bucketed_batches, padding_share, random_batches, sorted_batches
from .features import Batch, TaskFeatures, collate, featurize
from .model import FREEZE_MODES, MultitaskModel
from .schedules import BATCH_SCHEDULES, get_schedule, register_schedule

__all__ = [
    "BATCH_SCHEDULES", "Batch", "FREEZE_MODES", "MultitaskModel", "TaskFeatures", "bucketed_batches", "collate", "featurize",
    "get_schedule", "padding_share", "random_batches", "register_schedule", "sorted_batches",
]
