"""Status events out: one JSON object per line, with `t` = seconds since the stream started."""

from __future__ import annotations

import json
import threading
import time
from typing import Callable, TextIO


class EventLog:
    """Thread-safe JSON-lines sink. `stream` may be None (events only kept for the summary)."""

    def __init__(self, stream: TextIO | None = None, on_event: Callable[[dict], None] | None = None):
        self.stream, self.on_event = stream, on_event
        self.t0: float | None = None
        self._lock = threading.Lock()

    def now(self) -> float:
        return 0.0 if self.t0 is None else round(time.perf_counter() - self.t0, 4)

    def emit(self, event: str, **fields) -> dict:
        ev = {"event": event, "t": self.now(), **fields}
        with self._lock:
            if self.stream is not None:
                self.stream.write(json.dumps(ev, default=str) + "\n")
                self.stream.flush()
            if self.on_event is not None:
                self.on_event(ev)
        return ev
