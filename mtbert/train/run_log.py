"""What a run records as it goes: ``metrics.jsonl`` always (dev evaluations and, every
``train.log_every`` steps, the training loss and learning rate), and TensorBoard scalars when the
``tensorboard`` package is installed and ``train.tensorboard`` is on.

metrics.jsonl holds only numbers that a resumed run reproduces exactly (losses, metrics, the learning
rate), so an interrupted and resumed run writes the same file as an uninterrupted one; throughput,
which depends on the machine's load, goes to TensorBoard and the log.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

from ..integrity import read_json_lines

log = logging.getLogger("mtbert")
METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


def tensorboard_writer(run_dir: Path, enabled: bool):
    """A SummaryWriter in ``run_dir/tensorboard``, or None when off or not installed."""
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # the tensorboard package is optional
        return None
    return SummaryWriter(str(run_dir / TENSORBOARD_DIR))


class RunLog:
    """``active`` False (data-parallel ranks other than 0) counts records without writing them."""

    def __init__(self, run_dir: Path, tensorboard: bool = True, active: bool = True):
        self.active = active
        self.path = Path(run_dir) / METRICS_FILE
        self.run_dir = Path(run_dir)
        self.enabled = tensorboard
        self.writer = None
        self.lines = 0  # lines written so far: saved in the checkpoint, so resume can drop later ones

    def start(self, resume: bool) -> None:
        """A fresh file, or on resume the file cut back to the ``lines`` the checkpoint recorded."""
        if not self.active:
            return
        if resume:
            if self.path.exists():  # drop lines written after the checkpoint the run resumes from
                kept = self.path.read_text(encoding="utf-8").splitlines(keepends=True)[: self.lines]
                self.path.write_text("".join(kept), encoding="utf-8")
        else:
            self.lines = 0
            self.path.write_text("", encoding="utf-8")
        self.writer = tensorboard_writer(self.run_dir, self.enabled)

    def record(self, values: dict, scalars: Optional[dict] = None) -> None:
        """One line in metrics.jsonl; its numbers (and ``scalars``) to TensorBoard under split/name."""
        if not self.active:
            self.lines += 1
            return
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(values) + "\n")
        self.lines += 1
        if self.writer is not None:
            split, step = values.get("split", "train"), values["step"]
            for name, value in {**values, **(scalars or {})}.items():
                if name not in ("step", "epoch", "split") and isinstance(value, (int, float)):
                    self.writer.add_scalar(f"{split}/{name}", value, step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def read_metrics(run_dir: Path, split: Optional[str] = None) -> list[dict]:
    """The records of a run's metrics.jsonl, optionally of one split ("dev" or "train")."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    records = [r for r in read_json_lines(path) if isinstance(r, dict)]
    return [r for r in records if split is None or r.get("split") == split]
