"""A function compiled with torch.compile (inductor) on a CPU, which a run survives not having.

Why: a few elementwise jobs (AdamW's update, dropout) cost several passes over memory when written
with eager tensor ops and one pass as a compiled loop. Compiling needs a C++ compiler and a supported
platform; where it fails, the run must go on at the eager speed, not stop. This class compiles once
per process, lazily, and on the first failure says so in one warning and reports failure from then on,
so that every caller can take its own eager path.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Optional

import torch

log = logging.getLogger("mtbert")


class CompiledKernel:
    """``function`` compiled on first use with ``options``; ``switch`` names the environment variable
    that turns the automatic choice off ("0") or on ("1"); unset, ``default`` decides."""

    def __init__(self, function: Callable, owner: str, what: str, fallback: str, switch: str,
                 default: bool = True, **options):
        self.function = function
        self.owner, self.what, self.fallback, self.switch = owner, what, fallback, switch
        self.default = default
        self.options = options
        self.compiled: Optional[Callable] = None
        self.broken: Optional[str] = None  # why compiling failed, once it has

    def wanted(self, setting: Optional[bool], device: torch.device) -> bool:
        """``setting`` True/False forces it; None (auto) means on a CPU where the environment (or, unset,
        the default) says yes."""
        if setting is not None:
            return setting
        return device.type == "cpu" and os.environ.get(self.switch, "1" if self.default else "0") != "0"

    def __call__(self, *args) -> tuple[bool, Any]:
        """(True, what the compiled function returns), or (False, None) when it cannot be compiled: then
        nothing was computed and the caller runs its eager path. Compiling happens before the kernel
        touches a tensor, so a failure leaves in-place arguments as they were."""
        if self.broken is not None:
            return False, None
        if self.compiled is None:
            self.compiled = torch.compile(self.function, **self.options)
        try:
            return True, self.compiled(*args)
        except Exception as error:
            self.broken = f"{type(error).__name__}: {error}".splitlines()[0]
            log.warning("%s: compiling %s failed (%s); using %s. Set %s=0 to skip the attempt.",
                        self.owner, self.what, self.broken, self.fallback, self.switch)
            return False, None
