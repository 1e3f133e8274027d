"""The training loop and what it needs: precision/device, data loading, checkpoints, interruption."""

from .trainer import Trainer, default_run_dir

__all__ = ["Trainer", "default_run_dir"]
