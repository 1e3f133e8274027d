"""The multitask model, features and batches; batch schedules, loss balancing and gradient surgery."""

from .balancing import LOSS_BALANCERS, LossBalancer, build_balancer, register_balancer
from .batching import bucketed_batches, padding_share, random_batches, sorted_batches
from .features import Batch, TaskFeatures, collate, featurize
from .model import FREEZE_MODES, MultitaskModel
from .schedules import (BATCH_SCHEDULES, BatchSchedule, Plan, Step, build_schedule, plan_counts,
                        register_schedule)
from .surgery import GRADIENT_SURGERY, GradientSurgery, build_surgery, register_surgery

__all__ = [
    "BATCH_SCHEDULES", "Batch", "BatchSchedule", "FREEZE_MODES", "GRADIENT_SURGERY", "GradientSurgery",
    "LOSS_BALANCERS", "LossBalancer", "MultitaskModel", "Plan", "Step", "TaskFeatures", "bucketed_batches",
    "build_balancer", "build_schedule", "build_surgery", "collate", "featurize", "padding_share",
    "plan_counts", "random_batches", "register_balancer", "register_schedule", "register_surgery", "sorted_batches",
]
