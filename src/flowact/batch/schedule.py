"""Running the jobs: in this process (one model per preset, the next job's generation
overlapping the previous job's encode tail), or in `--jobs N` worker processes of a
`ProcessPoolExecutor` (spawn), one model per worker, each pinned to its device.

Stopping: a `stop` event (set on Ctrl-C / SIGTERM) ends each running render at its next
chunk; the job removes its partial file; jobs not started are not reported (a restart
does them).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from typing import Callable

from .job import BatchOptions, Routes, JobResult, run_job
from .manifest import Job

OnResult = Callable[[JobResult], None]
OnChunk = Callable[[int, int, int], None]  # (manifest line, chunks done, chunks)
OnLoad = Callable[[str, object, str], None]  # (preset, weights source, device)


def run_here(
    jobs: list[Job],
    options: BatchOptions,
    stop: threading.Event,
    *,
    overlap: bool = True,
    on_result: OnResult,
    on_chunk: OnChunk | None = None,
    on_load: OnLoad | None = None,
) -> bool:
    """Jobs back to back in this process; returns True if interrupted. With `overlap`, job
    i+1 starts as soon as job i's model work is done, while job i's last frames are still
    being encoded and its file finalised (two threads; the model is used by one at a time)."""
    routes = Routes(options, on_load=on_load)
    futures: list[Future] = []
    interrupted = False
    with ThreadPoolExecutor(2, thread_name_prefix="flowact-job") as pool:
        try:
            for job in jobs:
                if stop.is_set():
                    break
                generated, finished = threading.Event(), threading.Event()
                fut = pool.submit(run_job, job, routes, stop=stop, on_chunk=on_chunk, on_generated=generated.set)
                fut.add_done_callback(lambda f, finished=finished: _report(f, on_result, finished))
                futures.append(fut)
                gate = generated if overlap else finished
                while not gate.wait(0.2):
                    pass
        except KeyboardInterrupt:
            interrupted = True
            stop.set()
        while True:  # running jobs stop at their next chunk and remove their partial file
            try:
                wait(futures)
                break
            except KeyboardInterrupt:
                interrupted = True
                stop.set()
    return interrupted or stop.is_set()


def _report(fut: Future, on_result: OnResult, finished: threading.Event) -> None:
    try:
        on_result(fut.result())
    finally:
        finished.set()


def worker_device(device: str, index: int) -> str:
    """Worker `index`'s device: cuda:index % GPUs when CUDA is asked for (or auto finds it)."""
    if device in ("auto", "cuda"):
        import torch

        if torch.cuda.is_available() and torch.cuda.device_count() > 0:
            return f"cuda:{index % torch.cuda.device_count()}"
        return "cpu" if device == "auto" else device
    return device


def worker_threads(options: BatchOptions, workers: int) -> int:
    """CPU threads per worker: the cores split between workers (or --threads as given)."""
    return options.threads or max(1, (os.cpu_count() or 1) // workers)


_worker: dict = {}  # this worker process's routes, stop event and event queue


def _init_worker(options: BatchOptions, workers: int, slots, stop, events) -> None:
    # Ctrl-C reaches the whole process group: only the parent acts on it, via `stop`.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    index = slots.get()
    device = worker_device(options.device, index)
    threads = worker_threads(options, workers)
    on_load = lambda name, source, dev: events.put(("load", name, source, dev))  # noqa: E731
    _worker.update(routes=Routes(options, device=device, threads=threads, on_load=on_load), stop=stop, events=events)
    parent = os.getppid()

    def orphan_watch():  # a SIGKILLed parent must not leave workers behind
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=orphan_watch, daemon=True).start()


def _result(fut: Future, job: Job) -> JobResult:
    try:
        return fut.result()
    except Exception as exc:  # noqa: BLE001 - a worker died (e.g. killed): its job failed
        return JobResult(
            job.line, job.image, job.audio, job.out, "failed", error=f"worker process failed: {exc!r}", bug=True
        )


def _work(job: Job) -> JobResult:
    events = _worker["events"]
    return run_job(
        job,
        _worker["routes"],
        stop=_worker["stop"],
        on_chunk=lambda line, done, total: events.put(("chunk", line, done, total)),
    )


def run_pool(
    jobs: list[Job],
    options: BatchOptions,
    workers: int,
    stop: threading.Event,
    *,
    on_result: OnResult,
    on_chunk: OnChunk | None = None,
    on_load: OnLoad | None = None,
) -> bool:
    """Jobs spread over `workers` spawned processes; returns True if interrupted."""
    ctx = mp.get_context("spawn")
    wstop, slots, events = ctx.Event(), ctx.Queue(), ctx.Queue()
    for i in range(workers):
        slots.put(i)

    def relay():  # worker progress and load notices, into this process's callbacks
        while (item := events.get()) is not None:
            if item[0] == "chunk" and on_chunk:
                on_chunk(*item[1:])
            elif item[0] == "load" and on_load:
                on_load(*item[1:])

    relay_thread = threading.Thread(target=relay, daemon=True)
    relay_thread.start()
    interrupted = False
    with ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=_init_worker, initargs=(options, workers, slots, wstop, events)
    ) as pool:
        owner = {pool.submit(_work, job): job for job in jobs}
        pending = set(owner)
        while pending:
            try:
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                if stop.is_set() and not wstop.is_set():
                    raise KeyboardInterrupt
                for f in done:
                    if not f.cancelled():
                        on_result(_result(f, owner[f]))
            except KeyboardInterrupt:
                # running jobs stop at their next chunk and remove their partial file
                interrupted = True
                stop.set()
                wstop.set()
                for f in pending:
                    f.cancel()
    events.put(None)
    relay_thread.join(timeout=5)
    return interrupted
