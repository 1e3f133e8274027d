"""Ctrl-C handling: the first SIGINT asks the loop to stop after the current step (so a checkpoint is
never taken mid-update); a second one interrupts at once."""

from __future__ import annotations

import signal
import sys
import threading


class StopRequest:
    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nmtbert: stopping after this step and saving a checkpoint (Ctrl-C again to abort now)",
              file=sys.stderr, flush=True)

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
