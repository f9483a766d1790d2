"""How sessions share the CPU: one pool of worker threads, as many as cores, runs the model work of
every session; the routes (weights) are loaded once and shared.

Each session keeps its own live loop (live/session.py: a generation thread and a pacing thread),
but its chunk work (each part of `stream.live_parts`: motion engine + warp of a chunk's first
frame, then of the rest, or a splice's; the toon model + decode) runs on the pool: the session's
thread hands each part over and waits. torch runs one thread per operation
(`torch.set_num_threads(1)`, process-wide), so N workers keep N cores busy and never more: with
more sessions than cores, chunks queue (first come, first served, live chunks before set-up work)
instead of all running at once at a fraction of the speed, and each chunk runs at one core's full
speed, which keeps the live loop's `ahead` (and so the reaction to a command) short. Measured on a
2-core CPU (photo-512, 1 thread per op): two streams in two threads made 1.8x the chunks of one,
three threads no more than two. The heavy per-chunk parts release the GIL (torch, the warp's
scipy/numpy), so threads suffice; a process per session would copy the weights and pay a start-up
per session for no gain. Batching the motion model across sessions is not done: it is ~15% of a
photo chunk (the warp, per picture, is the rest).

Video encoding (VP8) and audio (Opus) run on aiortc's own threads, beside the pool.
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

LIVE, SETUP = 0, 1  # priorities: a session's chunks before set-up work (face mesh, rig, warm-up prompts)


class _Job:
    __slots__ = ("fn", "args", "done", "result", "error")

    def __init__(self, fn, args):
        self.fn, self.args, self.done = fn, args, threading.Event()
        self.result = self.error = None


class WorkerPool:
    """`workers` daemon threads that run submitted calls: lower priority number first, then the
    earliest due time (a live chunk's: when its first frame is shown; otherwise when it was asked)."""

    def __init__(self, workers: int):
        self.workers = max(1, int(workers))
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._seq = itertools.count()
        self._busy = [0.0] * self.workers  # seconds each worker spent running calls
        self._started = time.perf_counter()
        self._threads = [
            threading.Thread(target=self._loop, args=(i,), name=f"flowact-serve-worker-{i}", daemon=True)
            for i in range(self.workers)
        ]
        for t in self._threads:
            t.start()

    def run(self, priority: int, fn, *args, due: float | None = None):
        """Run fn(*args) on a worker; the caller waits and gets the result (or the exception).
        `due`: a perf_counter time the result is needed by (None: now)."""
        job = _Job(fn, args)
        self._queue.put((priority, time.perf_counter() if due is None else due, next(self._seq), job))
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result

    def _loop(self, i: int) -> None:
        while True:
            *_, job = self._queue.get()
            if job is None:
                return
            t = time.perf_counter()
            try:
                job.result = job.fn(*job.args)
            except BaseException as exc:  # noqa: BLE001 - handed back to the caller
                job.error = exc
            finally:
                self._busy[i] += time.perf_counter() - t
                job.done.set()

    def load(self) -> float:
        """Mean share of the workers' time spent running calls since the pool started."""
        return sum(self._busy) / (self.workers * max(1e-9, time.perf_counter() - self._started))

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put((99, 0.0, next(self._seq), None))


class PooledStream:
    """A route's chunk stream whose chunk work runs on the pool: each part of a live chunk
    (`live_parts`: the live loop shows the first while the rest are drawn, and makes a chunk again
    from a frame on for speech that arrives while it shows) is one job, queued by when its chunk is
    due; the warm-up's whole chunks (`frames`) too. The stream's state (`snapshot`, `restore`) stays
    with the session's own thread, which waits on each job."""

    def __init__(self, stream, pool: WorkerPool, due: Callable[[int], float | None]):
        self._stream, self._pool, self._due = stream, pool, due

    def frames(self, index: int, prompt: str, state, pcm: np.ndarray, lookahead: np.ndarray) -> np.ndarray:
        work = self._stream.frames
        return self._pool.run(LIVE, work, index, prompt, state, pcm, lookahead, due=self._due(index))

    def live_parts(self, index: int, prompt: str, state, pcm: np.ndarray, lookahead: np.ndarray, *start):
        parts = self._stream.live_parts(index, prompt, state, pcm, lookahead, *start)
        due = self._due(index)
        try:
            while (part := self._pool.run(LIVE, next, parts, None, due=due)) is not None:
                yield part
        finally:
            parts.close()

    def prime(self, prompts: list[str]) -> None:
        self._pool.run(SETUP, self._stream.prime, prompts)

    def __getattr__(self, name):  # stage, chunk_samples, lookahead_samples, ...: the stream's own
        return getattr(self._stream, name)


class PooledRoute:
    """A loaded route as a LiveSession sees it, with the per-picture and per-chunk work on the pool.
    Each session gets its own (`for_session`) and says which LiveSession it serves (`live`), so that
    its chunks are queued by when they are due: the pool serves the chunk needed soonest first,
    whatever each session's margin (its `ahead`) is."""

    def __init__(self, route, pool: WorkerPool):
        self._route, self._pool = route, pool
        self.live = None  # the LiveSession served (None: the shared copy)

    def for_session(self) -> "PooledRoute":
        return PooledRoute(self._route, self._pool)

    def due(self, index: int) -> float | None:
        """When chunk `index`'s first frame is shown (live/session.py's schedule); None before the clock starts."""
        live = self.live
        if live is None or live.t0 is None:
            return None
        return live.t0 + (index * live.F + live.held) / live.fps

    def prepare(self, reference: np.ndarray, face=None):
        return self._pool.run(SETUP, self._route.prepare, reference, face)

    def stream(self, picture, seed: int, samples=None, stages=None, sync=None) -> PooledStream:
        return PooledStream(self._route.stream(picture, seed, samples, stages, sync), self._pool, self.due)

    def conditions(self, compiled: bool = False) -> str:
        return f"{self._route.conditions(compiled)}; served: {self._pool.workers} worker threads shared by all sessions"

    def __getattr__(self, name):  # preset, source, device, name, ...: the route's own
        return getattr(self._route, name)


class Workers:
    """The pool and the routes loaded once per preset (the shared weights)."""

    def __init__(self, workers: int | None = None, load_options: dict | None = None):
        self.pool = WorkerPool(workers or os.cpu_count() or 1)
        self._options = dict(load_options or {})
        self._routes: dict[str, PooledRoute] = {}
        self._lock = threading.Lock()
        self._pictures = threading.Lock()  # the face models (LiteRT interpreters) take one picture at a time

    def route(self, preset) -> PooledRoute:
        """The route of a loaded preset, loaded on first use (one thread per torch op, see above)."""
        import torch

        from ..routes import load_route

        with self._lock:
            if preset.name not in self._routes:
                route = load_route(preset, **{**self._options, "threads": 1})
                torch.set_num_threads(1)  # process-wide: a route's load may have set more
                self._routes[preset.name] = PooledRoute(route, self.pool)
            return self._routes[preset.name]

    def load_picture(self, preset, path: Path, name: str):
        """The picture as the preset's route takes it (its face mesh on the photo route), on the pool."""
        from ..routes import route_of

        def load():
            try:
                with self._pictures:
                    return route_of(preset).load_picture(preset, path)
            except Exception as exc:
                if str(path) in str(exc):  # name the file as the user named it, not the server's path
                    exc.args = (str(exc).replace(str(path), name),)
                raise

        return self.pool.run(SETUP, load)

    @property
    def loaded(self) -> list[str]:
        return sorted(self._routes)

    def close(self) -> None:
        self.pool.close()
