"""Delta checkpoints: a model whose encoder was partly frozen saves only what differs from its base.

A delta model directory has no encoder weights file; ``encoder_delta.safetensors`` holds the encoder
tensors that trained (whole, or for a parameter selection only the selected entries plus a 1-bit
mask), and ``mtbert.json`` names the base checkpoint with a SHA-256 fingerprint of its weights file.
Loading reads the base, checks the fingerprint (a delta on the wrong base would load silently into
nonsense), and writes the delta over it. Heads, shared layers and adapter-type modules are saved in
``heads.safetensors`` either way.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from ..bert import CheckpointError
from ..bert.checkpoint import WEIGHT_FILES, resolve_checkpoint_dir
from .selection import Masks, read_masked_file, write_masked_file

DELTA_FILE = "encoder_delta.safetensors"
MASK_PREFIX = "mask:"
Changes = dict[str, Optional[torch.Tensor]]  # encoder tensor name -> None (whole tensor) or mask of changed entries
_fingerprints: dict[tuple[str, int, int], str] = {}


def base_reference(name: str) -> str:
    """How to find the base again: an existing local directory by its absolute path, else the name."""
    path = Path(name).expanduser()
    return str(path.resolve()) if path.is_dir() else name


def base_fingerprint(name: str) -> str:
    """SHA-256 of the base checkpoint's weights file (cached per file, size and modification time)."""
    directory = resolve_checkpoint_dir(name)
    for filename in WEIGHT_FILES:
        file = directory / filename
        if file.exists():
            stat = file.stat()
            key = (str(file.resolve()), stat.st_size, stat.st_mtime_ns)
            if key not in _fingerprints:
                digest = hashlib.sha256()
                with open(file, "rb") as handle:
                    for chunk in iter(lambda: handle.read(1 << 22), b""):
                        digest.update(chunk)
                _fingerprints[key] = digest.hexdigest()
            return _fingerprints[key]
    raise CheckpointError(f"{directory} has no weights file to fingerprint")


def save_delta(encoder: nn.Module, changes: Changes, path: Path) -> None:
    state = encoder.state_dict()
    tensors = {}
    for name, mask in changes.items():
        value = state[name].detach()
        tensors[name] = (value if mask is None else value[mask.to(value.device)]).contiguous().cpu()
    masks = {name: mask for name, mask in changes.items() if mask is not None}
    write_masked_file(path, tensors, masks, MASK_PREFIX, metadata={"format": "pt"})


def load_delta(path: Path) -> tuple[dict[str, torch.Tensor], Masks]:
    if not path.exists():
        raise CheckpointError(f"{path} not found (a delta model needs its encoder delta)")
    return read_masked_file(path, MASK_PREFIX)


@torch.no_grad()
def apply_delta(encoder: nn.Module, values: dict[str, torch.Tensor], masks: Masks, source: str) -> Changes:
    """Write the delta into the base encoder; returns what it changed (so a later save keeps it)."""
    params = dict(encoder.named_parameters())
    problems = [f"{name}: not an encoder parameter" for name in values if name not in params]
    for name, value in values.items():
        if name not in params:
            continue
        target = params[name]
        mask = masks.get(name)
        if mask is None and value.shape != target.shape:
            problems.append(f"{name}: file {tuple(value.shape)} vs model {tuple(target.shape)}")
        elif mask is not None and (mask.shape != target.shape or int(mask.sum()) != value.numel()):
            problems.append(f"{name}: mask {tuple(mask.shape)} with {int(mask.sum())} entries vs "
                            f"{value.numel()} values and parameter {tuple(target.shape)}")
    if problems:
        raise CheckpointError(f"{source} does not fit the base encoder:\n  " + "\n  ".join(problems))
    for name, value in values.items():
        target, mask = params[name], masks.get(name)
        if mask is None:
            target.copy_(value)
        else:
            target[mask.to(target.device)] = value.to(target.device, target.dtype)
    return {name: masks.get(name) for name in values}
