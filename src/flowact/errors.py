"""The one kind of user error.

Anything the user can fix (a missing file, a corrupt image, a bad preset key, an
unwritable output path) raises `FlowactError`. The CLI prints its message on one line and
exits with `exit_code`; every other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path


class FlowactError(Exception):
    """A problem with the user's input or environment, explained in one line."""

    exit_code = 2

    def __init__(self, message: str, *, path: str | Path | None = None, exit_code: int | None = None):
        if path is not None:
            message = f"{path}: {message}"
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


def sigterm_as_interrupt():
    """Make SIGTERM stop work the way Ctrl-C does (KeyboardInterrupt), so `kill` also leaves
    finalised, playable files. Main thread only (Python's rule); returns the old handler."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handler)
