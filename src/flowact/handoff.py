"""Hand-offs between the threads of a pipeline (generation -> decode -> encode -> ffmpeg).

A bounded queue between two stages gives back-pressure: a slow stage slows the one before it
instead of filling memory. Its danger is a put that waits on a stage that is gone, or an
end-of-stream that is given up on because the next stage is slow (a `put(None, timeout=5)`
dropped on queue.Full once left a render waiting for good). So every put here waits in short
slices and asks between them whether the stage that takes the item is still alive: it
returns as soon as the item is in, however slow that stage is, and returns False instead of
waiting once the stage has died. Failures travel with the stage, named, to the producer.
"""

from __future__ import annotations

import queue
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from .errors import FlowactError

POLL_SECONDS = 0.1  # how often a waiting put checks that its consumer is alive (not a deadline)

END = object()  # end of stream: the stage finishes what it was given and returns


def put(q: queue.Queue, item: Any, alive: Callable[[], bool]) -> bool:
    """Put `item` into `q`, waiting as long as it takes while `alive()` holds. True once the
    item is in; False (item dropped) if `alive()` stopped holding first."""
    while alive():
        try:
            q.put(item, timeout=POLL_SECONDS)
            return True
        except queue.Full:
            continue
    return False


class StageFailed(FlowactError):
    """A pipeline stage died. The message names the stage, the error and where it was raised;
    the output was still finalised with what was made before it (`__cause__` holds the error)."""

    exit_code = 1

    def __init__(self, stage: str, error: BaseException, output: str | Path | None = None, frames: int | None = None):
        tb = traceback.extract_tb(error.__traceback__) if error.__traceback__ else []
        where = f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno} in {tb[-1].name})" if tb else ""
        message = f"the {stage} stage failed: {type(error).__name__}: {error}{where}"
        if output is not None and str(output) != "-":
            message += f"; {output} was finalised with the {frames} frames made before it"
        super().__init__(message)
        self.stage, self.error = stage, error


class Stage:
    """One pipeline stage: a daemon thread that hands each item of its bounded inbox to
    `work(item)` until END. A failure ends the thread and is kept in `error`; `send` then
    returns False at once, so no producer waits on a dead stage."""

    def __init__(self, name: str, work: Callable[[Any], None], capacity: int):
        self.name, self._work = name, work
        self.error: BaseException | None = None
        self._inbox: queue.Queue = queue.Queue(maxsize=max(1, capacity))
        self._thread = threading.Thread(target=self._run, name=f"flowact-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                item = self._inbox.get()
                if item is END:
                    return
                self._work(item)
        except BaseException as exc:  # noqa: BLE001 - kept for the producer, which raises it
            self.error = exc

    def alive(self) -> bool:
        return self._thread.is_alive()

    def send(self, item: Any, watch: Callable[[], None] | None = None) -> bool:
        """Queue `item` (waiting while the inbox is full); False if the stage has ended.
        `watch()`, if given, runs between the waits (a caller's stall check)."""
        if watch is None:
            return put(self._inbox, item, self.alive)
        return put(self._inbox, item, lambda: (watch(), self.alive())[1])

    def finish(self, timeout: float | None = None) -> bool:
        """End of stream: the stage works through what it was sent, then returns. Waits for it
        (in slices, so a Ctrl-C still reaches the caller) at most `timeout` seconds (None: as
        long as it takes); True once the stage has ended (at once if it already died)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        alive = self.alive if deadline is None else (lambda: self.alive() and time.monotonic() < deadline)
        put(self._inbox, END, alive)
        while alive():
            self._thread.join(POLL_SECONDS)
        return not self.alive()
