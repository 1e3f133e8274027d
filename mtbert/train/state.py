"""Resumable training state, written atomically and read back without unpickling objects.

The file holds model and optimizer tensors, the LR schedule, the step and epoch position, the best
score and the RNG states: everything ``--resume`` needs to continue exactly where a run stopped.
It is written to a temporary file and renamed, so a crash never leaves a half-written checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..bert import CheckpointError

STATE_FILE = "checkpoint.pt"


def atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def rng_states() -> dict:
    states = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def load_training_state(run_dir: Path) -> dict:
    path = run_dir / STATE_FILE
    if not path.exists():
        raise CheckpointError(f"{path} not found: nothing to resume in {run_dir}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"{path} cannot be read as a training checkpoint ({error})") from error
