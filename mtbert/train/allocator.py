"""Keep freed memory in the process while training on a CPU (Linux with glibc).

Why: glibc hands every large freed block straight back to the system (blocks over its mmap threshold,
at most 32 MB, and the free top of the heap) and maps fresh pages at the next allocation, which then
fault in one by one as they are first written. A training step frees and allocates the same large blocks
every time, all-MiniLM-L6-v2's 47 MB word-embedding gradient among them. With glibc's mmap for large blocks
and its trimming turned off, those pages stay mapped and warm. Measured on a 2-core EPYC over 300 of the
quickstart's steps: 0.38M page faults instead of 1.9M, and 1.0 s of system CPU time instead of 3.5 s
(about 8 ms a step, 4% of one); the wall-clock difference stayed inside that machine's run-to-run noise,
and peak resident memory did not change.

The cost: memory freed during the run is kept by the process for reuse, not returned to the system before
it ends. Other platforms (macOS, Windows, musl) are left as they are.
"""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger("mtbert")

M_TRIM_THRESHOLD = -1   # mallopt parameters, from glibc's malloc.h
M_MMAP_MAX = -4
NEVER_TRIM = 2**31 - 1  # the largest value mallopt takes (an int)


def keep_freed_memory() -> bool:
    """Tell glibc to serve large blocks from the heap and never trim it; True when it took effect."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    done = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))
    if not done:
        log.debug("glibc refused the mallopt settings; freed memory is returned to the system as usual")
    return done
