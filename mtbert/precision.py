"""Device and numeric precision: where the model runs and in which autocast.

On CPU, bf16 autocast is the default where the CPU has native bf16 (AVX512-BF16 or AMX): its matrix
products run several times faster than fp32. On CUDA, bf16 where supported, otherwise fp16 with a
gradient scaler. ``fp32`` turns autocast off everywhere.
"""

from __future__ import annotations

import re

import contextlib
import dataclasses
from typing import Optional

import torch
from torch import nn

PRECISIONS = ("auto", "bf16", "fp16", "fp32")


def cpu_has_native_bf16() -> bool:
    checks = [getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    return any(check() for check in checks if check is not None)


DEVICE_NAME = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def resolve_device(name: str, local_rank: int = 0, option: str = "train.device") -> torch.device:
    """``auto``: CUDA when present (the process's own GPU under torchrun), else CPU. ``option``: what the
    user set it with (``train.device``, ``--device``), for the errors."""
    if not isinstance(name, str) or not DEVICE_NAME.match(name):
        raise ValueError(f"{option} {name!r} is not a device: auto, cpu, mps, cuda or cuda:N")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise ValueError(f"{option}={name} but CUDA is not available on this machine")
    count = torch.cuda.device_count()
    if device.index is None and local_rank >= count:
        raise ValueError(f"this process (LOCAL_RANK={local_rank}) would train on GPU {local_rank}, but this machine "
                         f"has {count} GPU(s): start at most {count} process(es) per node (torchrun "
                         f"--nproc_per_node={count}), or set train.device=cpu")
    if device.index is not None and device.index >= count:
        raise ValueError(f"{option}={name} but this machine has {count} GPU(s) (cuda:0 to cuda:{count - 1})")
    device = torch.device("cuda", local_rank if device.index is None else device.index)
    torch.cuda.set_device(device)
    return device


@dataclasses.dataclass
class Precision:
    name: str                 # bf16 | fp16 | fp32
    device: torch.device

    @property
    def dtype(self) -> Optional[torch.dtype]:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.name)

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def keep_weights_cast(self, model: nn.Module) -> int:
        """Store the weights autocast casts on every use (each ``nn.Linear``'s weight and bias) in the
        autocast dtype once, for a model that will only predict; returns how many tensors were cast.

        Why: autocast keeps its bf16 copy of a weight only until its region ends, and a prediction opens
        one region per call, so answering one sentence cast all of MiniLM's ~11M projection weights
        again, about as long as the forward pass itself took. The values are the ones autocast makes
        (the same rounding), so predictions stay bit-identical; the fp32 weights are gone, so this is
        only for a model nobody trains afterwards. Without autocast (fp32) nothing changes.
        """
        if self.dtype is None:
            return 0
        cast = 0
        for module in model.modules():
            if type(module) is nn.Linear:  # a subclass may use its weight outside autocast's linear rule
                cast += sum(1 for p in module.parameters(recurse=False) if p.dtype != self.dtype)
                module.to(self.dtype)
        return cast

    def grad_scaler(self) -> Optional["torch.amp.GradScaler"]:
        return torch.amp.GradScaler(self.device.type) if self.name == "fp16" else None


def resolve_precision(name: str, device: torch.device) -> Precision:
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}; choose one of {', '.join(PRECISIONS)}")
    if name == "auto":
        if device.type == "cuda":
            name = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            name = "bf16" if cpu_has_native_bf16() else "fp32"
    if name == "fp16" and device.type == "cpu":
        raise ValueError("fp16 autocast is for CUDA; use bf16 or fp32 on CPU")
    return Precision(name, device)
