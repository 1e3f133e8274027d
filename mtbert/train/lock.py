"""One writer per run directory: an exclusive lock on ``<run>/.lock`` for as long as a run trains.

Two trainings into one directory (or two ``--resume`` of one run) used to interleave metrics.jsonl and
crash on each other's temporary files. The lock is an ``flock``: the kernel drops it when its process
ends however it ends, so a lock left by a killed process is stale by construction and the next run
takes it over (the PID written in the file is only for the message). Re-entrant within one process:
the command line holds it while it clears a directory for ``--overwrite``, and the trainer then takes
it again.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from ..errors import RunDirectoryBusy

LOCK_FILE = ".lock"
_held: dict[Path, list] = {}  # directory -> [open file, depth]


@contextlib.contextmanager
def run_directory_lock(run_dir: Path):
    run_dir = Path(run_dir).resolve()
    if run_dir in _held:
        _held[run_dir][1] += 1
        try:
            yield
        finally:
            _held[run_dir][1] -= 1
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = open(run_dir / LOCK_FILE, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "another process"
        handle.close()
        raise RunDirectoryBusy(f"{run_dir} is in use by {owner}: wait for it to finish, or use another "
                               "--output-dir") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"process {os.getpid()}\n")
    handle.flush()
    _held[run_dir] = [handle, 1]
    try:
        yield
    finally:
        _held[run_dir][1] -= 1
        if _held[run_dir][1] == 0:
            del _held[run_dir]
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
