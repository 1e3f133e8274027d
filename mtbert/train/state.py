"""Resumable training state, written atomically and read back without unpickling objects.

The file holds model and optimizer tensors, the LR schedule, the step and epoch position, the best
score and the RNG states: everything ``--resume`` needs to continue exactly where a run stopped.
It is written to a temporary file and renamed, so a crash never leaves a half-written checkpoint, and
its SHA-256 goes beside it (``checkpoint.pt.sha256``), so a damaged file is named, not resumed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..bert import CheckpointError
from ..integrity import replace_with_checksum, sidecar, verify_file

STATE_FILE = "checkpoint.pt"


REQUIRED = ("model", "optimizer", "lr_scheduler", "step", "epoch", "position", "best_score", "metric_lines",
            "epoch_loss", "counters", "rng")


def temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


def atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = temporary(path)
    torch.save(obj, tmp)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    replace_with_checksum(tmp, path)


def rng_states() -> dict:
    states = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def load_training_state(run_dir: Path, trust_unverified: bool = False) -> dict:
    """The checkpoint, checked against its checksum. One without a checksum beside it cannot be told from a
    damaged or edited file, so it is refused unless ``trust_unverified`` (``--trust-checkpoint``)."""
    path = run_dir / STATE_FILE
    verify_file(path, temporary(path))
    if not path.exists():
        raise CheckpointError(f"{path} not found: nothing to resume in {run_dir}")
    if not sidecar(path).exists() and not trust_unverified:
        raise CheckpointError(f"{path} has no checksum beside it ({sidecar(path).name}), so damage or edits cannot "
                              "be ruled out: restore the file, or resume with --trust-checkpoint if you know it is intact")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"{path} cannot be read as a training checkpoint ({type(error).__name__}: "
                              f"{str(error).splitlines()[0] if str(error) else ''})") from None
    missing = [key for key in REQUIRED if not isinstance(state, dict) or key not in state]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}: not a complete mtbert training checkpoint")
    return state
