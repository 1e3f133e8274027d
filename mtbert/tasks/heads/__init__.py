"""Task heads: what turns encoder states into a task's output. One class each, registered by name.

Importing this package registers every built-in head; a user's head is one ``@register_head`` class.
"""

from . import linear, relational, siamese, transformer_layer  # noqa: F401  (registration)
from .base import (HEADS, POOLINGS, HeadContext, HeadOutput, SharedLayers, SiameseHead, TaskHead, build_head,
                   default_head_name, masked_mean, register_head, register_pooling)
from .relational import relational_features

__all__ = [
    "HEADS", "POOLINGS", "HeadContext", "HeadOutput", "SharedLayers", "SiameseHead", "TaskHead", "build_head",
    "default_head_name", "masked_mean", "register_head", "register_pooling", "relational_features",
]
