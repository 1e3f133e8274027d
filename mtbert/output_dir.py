"""Writing a directory of outputs (an export, a soup) without ever destroying what it came from.

``--overwrite`` used to empty the target whatever it was: ``mtbert export --model R/best ... R/best
--overwrite`` removed the model it was exporting, and the run directory as the target took the
checkpoint and metrics with it. Now a target that is a source, holds one, or is a model or run directory
(other than an earlier output of the same kind) is refused, overwrite or not.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence

MODEL_FILE = "mtbert.json"
RUN_FILES = ("config.yaml", "checkpoint.pt", "results.json", "metrics.jsonl")


def prepare_output_dir(output: Path, overwrite: bool, sources: Sequence[Path] = (), earlier: str = "") -> None:
    """Make ``output`` an empty directory to write into. ``sources``: what is being read (never removed);
    ``earlier``: a file that marks an earlier output of this kind, which ``overwrite`` may replace even
    where it is a model directory (a soup is one)."""
    output = Path(output)
    target = output.resolve()
    for source in sources:
        source = Path(source).resolve()
        if target == source or target in source.parents:
            raise ValueError(f"{output} is or holds {source}, which this command reads: write to another directory")
    if not output.exists() or not any(output.iterdir()):
        output.mkdir(parents=True, exist_ok=True)
        return
    if not overwrite:
        raise FileExistsError(f"{output} is not empty: choose another directory, or --overwrite")
    is_earlier = bool(earlier) and (output / earlier).exists()
    if (output / MODEL_FILE).exists() and not is_earlier:
        raise FileExistsError(f"{output} is a model directory: --overwrite never removes one; choose another directory")
    if any((output / name).exists() for name in RUN_FILES):
        raise FileExistsError(f"{output} is a run directory: --overwrite never removes one; choose another directory")
    shutil.rmtree(output)
    output.mkdir(parents=True)
