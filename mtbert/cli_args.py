"""Argument types of the command line: every path checked for kind and every count for range, so a
wrong argument is one line naming it, before any work."""

from __future__ import annotations

import argparse
from pathlib import Path


def whole_number(low: int):
    """An argparse type: an integer >= ``low``."""
    def check(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {raw!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be {low} or more, got {value}")
        return value
    return check


positive_int = whole_number(1)
non_negative_int = whole_number(0)


def existing(kind: str):
    """An argparse type: a path that must exist as a ``file`` or a ``dir``, named in the error."""
    def check(raw: str) -> Path:
        path = Path(raw)
        if not path.exists():
            raise argparse.ArgumentTypeError(f"{raw} not found")
        if kind == "file" and path.is_dir():
            raise argparse.ArgumentTypeError(f"{raw} is a directory, expected a file")
        if kind == "dir" and not path.is_dir():
            raise argparse.ArgumentTypeError(f"{raw} is a file, expected a directory")
        return path
    return check


def input_path(raw: str):
    """A file to read, or ``-`` for standard input."""
    return raw if raw == "-" else existing("file")(raw)


def writable(kind: str):
    """An argparse type: a path to write, which must not exist as the other kind."""
    def check(raw: str) -> Path:
        path = Path(raw)
        if kind == "file" and path.is_dir():
            raise argparse.ArgumentTypeError(f"{raw} is a directory, expected a file to write")
        if kind == "dir" and path.exists() and not path.is_dir():
            raise argparse.ArgumentTypeError(f"{raw} is a file, expected a directory")
        return path
    return check


class Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line (its usage block is in --help)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")
