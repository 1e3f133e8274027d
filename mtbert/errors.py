"""The errors a user can cause, which the command line turns into one line and exit status 2, and the
ones that stop a run for its own reasons."""

from __future__ import annotations

from .bert import CheckpointError
from .config import ConfigError
from .tasks import DataError


class RunDirectoryBusy(RuntimeError):
    """Another process is writing the same run directory."""


class TrainingDiverged(RuntimeError):
    """Too many consecutive steps had a non-finite loss: the weights have diverged (exit status 1)."""


USER_ERRORS = (ConfigError, DataError, CheckpointError, RunDirectoryBusy, FileNotFoundError, FileExistsError,
               IsADirectoryError, NotADirectoryError, PermissionError, ValueError, KeyError, ImportError)
