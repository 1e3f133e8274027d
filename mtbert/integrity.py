"""Checksums for what a run writes, checked when it is read back, and JSON reads that name the file.

A model directory (a run's ``best/``) gets ``checksums.json``: the SHA-256 of every file in it, written
last. ``checkpoint.pt`` gets ``checkpoint.pt.sha256`` beside it. Why: a truncated or bit-flipped file
used to load silently (a checkpoint with flipped bytes resumed to weights of 1.7e38) or fail deep in a
library; now the damaged file is named before anything is read from it. Files written before checksums
existed load as before.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .bert import CheckpointError

CHECKSUMS = "checksums.json"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_json(path: Path, what: str = "JSON") -> Any:
    """``json.loads`` of a file, or a CheckpointError naming the file, line and column."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise CheckpointError(f"{path}: not UTF-8 text, expected {what}") from None
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}, line {error.lineno}, column {error.colno}: not valid {what} ({error.msg})") from None


def read_json_lines(path: Path) -> list[dict]:
    """One JSON object per line, or a CheckpointError naming the file and line."""
    records = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise CheckpointError(f"{path}, line {number}: not a JSON record ({error.msg})") from None
    return records


# ----- a directory of files ---------------------------------------------------------------------
def write_checksums(directory: Path) -> None:
    """``checksums.json`` over every other file of ``directory`` (call it last)."""
    directory = Path(directory)
    sums = {f.name: file_sha256(f) for f in sorted(directory.iterdir()) if f.is_file() and f.name != CHECKSUMS}
    (directory / CHECKSUMS).write_text(json.dumps(sums, indent=2) + "\n", encoding="utf-8")


def verify_checksums(directory: Path) -> None:
    """Every file listed in ``checksums.json`` present and unchanged; no list, nothing to check."""
    directory = Path(directory)
    listing = directory / CHECKSUMS
    if not listing.exists():
        return
    sums = read_json(listing, "checksum list")
    if not isinstance(sums, dict):
        raise CheckpointError(f"{listing}: not a checksum list")
    for name, expected in sums.items():
        path = directory / name
        if not path.is_file():
            raise CheckpointError(f"{path} is missing (listed in {listing})")
        if file_sha256(path) != expected:
            raise CheckpointError(f"{path} is damaged: its SHA-256 differs from the one recorded when it was written "
                                  f"({listing}); restore it or train again (or, if you changed it on purpose, delete "
                                  f"{CHECKSUMS})")


# ----- one file with a sidecar ------------------------------------------------------------------
def sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def replace_with_checksum(tmp: Path, path: Path) -> None:
    """Move the finished ``tmp`` to ``path`` with its checksum beside it. The sidecar moves first, so an
    interruption between the two moves leaves a sidecar that matches ``tmp``, which ``verify_file``
    then completes; never a sidecar that matches nothing."""
    side, side_tmp = sidecar(path), sidecar(tmp)
    side_tmp.write_text(file_sha256(tmp) + "\n", encoding="utf-8")
    os.replace(side_tmp, side)
    os.replace(tmp, path)


def verify_file(path: Path, tmp: Path) -> None:
    """``path`` matches its sidecar, or a CheckpointError naming it. A ``tmp`` that matches (the run was
    stopped between the two moves of ``replace_with_checksum``) is moved into place first."""
    side = sidecar(path)
    if not side.exists():
        return
    expected = side.read_text(encoding="utf-8").strip()
    if path.exists() and file_sha256(path) == expected:
        return
    if tmp.exists() and file_sha256(tmp) == expected:
        os.replace(tmp, path)
        return
    raise CheckpointError(f"{path} is damaged: its SHA-256 differs from the one recorded when it was written "
                          f"({side}); it cannot be resumed safely (start the run again with --overwrite)")
