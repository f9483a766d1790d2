"""Batch jobs on a Ray cluster (`flowact render --manifest JOBS --ray ADDRESS`): one actor per
worker slot, each holding its loaded model (one GPU per actor where the cluster has GPUs).

    driver (this process)                              actor (any node)
    check_job: skip complete, validate inputs  ──┐
    read the image and audio bytes               ├──>  write them to a scratch folder
                                                 │     run_job there (the local batch's code)
    write .<name>.partial.mp4, rename   <────────┘     return the finished mp4's bytes

Workers need not share the driver's filesystem: inputs travel to the actor and the video
comes back as bytes, so the skip-complete and partial-file rules are the local batch's,
applied to the driver's folders. An actor that dies (its process killed, its node lost) has
its job retried on the next free actor, the dead one replaced, up to `retries` times; then
the job fails as a bug (exit 1). Ray is imported only here, and only when a farm runs.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from ..errors import FlowactError
from .job import BatchOptions, Routes, JobResult, check_job, partial_path, record_failure, run_job
from .manifest import Job

INSTALL_HINT = "pip install flowact[ray]"
SCRATCH = "flowact-farm-"  # an actor's per-job folder in its node's temp folder: flowact-farm-PID-XXXX
POLL_SECONDS = 0.25  # how often the driver looks for finished jobs and asks for chunk progress


@dataclass(frozen=True)
class RayOptions:
    """Where and how the farm runs. `address`: Ray's own vocabulary, "local" (start an instance
    on this machine), "auto" (the cluster this machine is part of), "HOST:6379", "ray://HOST:10001";
    an already connected driver (ray.init called) uses that connection. `actors` None: one per
    GPU of the cluster, else one per `cpus` CPUs."""

    address: str = "local"
    actors: int | None = None
    cpus: float = 1.0  # CPUs each actor reserves (and its torch threads, unless --threads)
    retries: int = 2  # times a job whose actor died is retried before it fails


def import_ray():
    try:
        import ray
    except ImportError as exc:
        raise FlowactError(f"--ray needs Ray, which is not installed ({INSTALL_HINT})") from exc
    return ray


class _ShippedRoutes(Routes):
    """A worker's routes: presets come from the driver with each job, so a preset YAML file
    need not exist on the worker's node."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.shipped: dict = {}

    def preset(self, name: str):
        return self.shipped[name]


class FarmWorker:
    """One worker slot (a Ray actor): models loaded on first use, one job at a time; `progress`
    and `halt` answer while a job runs (the actor has two threads)."""

    def __init__(self, options: BatchOptions, device: str, threads: int):
        _sweep_scratch()
        self.loads: list[tuple] = []  # (preset, weights source, device) since the last job
        on_load = lambda name, source, dev: self.loads.append((name, source, dev))  # noqa: E731
        self.routes = _ShippedRoutes(replace(options, device=device, threads=threads), on_load=on_load)
        self.stop = threading.Event()  # set once, by halt: the farm is stopping
        self.chunks: tuple[int, int, int] | None = None  # (line, chunks done, chunks) of the running job

    def info(self) -> dict:
        return {"pid": os.getpid(), "host": socket.gethostname(), "device": self.routes.device}

    def progress(self):
        return self.chunks

    def halt(self) -> None:
        self.stop.set()

    def render(self, job: Job, preset, files: dict[str, tuple[str, bytes]]) -> tuple[JobResult, bytes | None, list]:
        """Run `job` on copies of its inputs (`files`: kind -> (file name, bytes)); returns its
        result (with the driver's paths), the finished video's bytes when ok, and model loads."""
        self.routes.shipped[job.preset] = preset
        _sweep_scratch()  # a killed actor may have been reaped only after this one started
        scratch = Path(tempfile.mkdtemp(prefix=f"{SCRATCH}{os.getpid()}-"))
        local = {}
        try:
            for kind, (name, data) in files.items():
                (scratch / kind).mkdir()
                local[kind] = scratch / kind / name
                local[kind].write_bytes(data)
            (scratch / "out").mkdir()
            local["out"] = scratch / "out" / Path(job.out).name
            here = replace(job, image=str(local["image"]), audio=str(local["audio"]), out=str(local["out"]))
            on_chunk = lambda line, done, total: setattr(self, "chunks", (job.line, done, total))  # noqa: E731
            r = run_job(here, self.routes, stop=self.stop, on_chunk=on_chunk)
            data = local["out"].read_bytes() if r.status == "ok" else None
        except Exception as exc:  # noqa: BLE001 - e.g. the node's scratch disk is full
            r, data = record_failure(JobResult(job.line, job.image, job.audio, job.out, "failed"), exc), None
        finally:
            self.chunks = None
            shutil.rmtree(scratch, ignore_errors=True)
        loads, self.loads = self.loads, []
        return _as_driver_paths(r, job, local), data, loads


def _sweep_scratch() -> None:
    """Remove the scratch folders that actors of this node left when they were killed mid-job
    (`flowact-farm-PID-*` of a PID no longer running)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{SCRATCH}*-*"):
        pid = folder.name[len(SCRATCH) :].split("-")[0]
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _running(pid: int) -> bool:
    """Whether `pid` is a live process; a zombie (killed, not yet reaped by its parent) is not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    try:  # Linux: the state letter follows the parenthesised command name
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def _as_driver_paths(r: JobResult, job: Job, local: dict[str, Path]) -> JobResult:
    """The worker's result in the driver's terms: its paths, in the fields and in any message."""
    names = {str(local[k]): v for k, v in (("image", job.image), ("audio", job.audio), ("out", job.out)) if k in local}
    if "out" in local:
        names[str(partial_path(local["out"]))] = str(partial_path(job.out))
    for path in sorted(names, key=len, reverse=True):  # a partial name contains its folder's
        r.error = r.error.replace(path, names[path]) if r.error else r.error
        r.traceback = r.traceback.replace(path, names[path])
    r.image, r.audio, r.output = job.image, job.audio, job.out
    return r


def _inputs(job: Job) -> dict[str, tuple[str, bytes]]:
    try:
        return {k: (Path(p).name, Path(p).read_bytes()) for k, p in (("image", job.image), ("audio", job.audio))}
    except OSError as exc:
        raise FlowactError(f"cannot read input ({exc.strerror or exc})", path=exc.filename) from exc


def _place(job: Job, data: bytes) -> None:
    """The finished video under its final name: written beside it first, renamed when whole."""
    tmp = partial_path(job.out)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, job.out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise FlowactError(f"cannot write the output ({exc.strerror or exc})", path=job.out) from exc


def _first_line(exc: BaseException) -> str:
    """A Ray error in one line: the root cause it ends with (`ModuleNotFoundError: ...`), else its
    first line, without terminal colours."""
    lines = [ln.strip() for ln in re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).splitlines() if ln.strip()]
    causes = [ln for ln in lines if re.match(r"[A-Za-z_][\w.]*(Error|Exception): ", ln)]
    return causes[-1] if causes else (lines[0] if lines else type(exc).__name__)


@dataclass
class _Slot:
    index: int
    actor: object
    failed_starts: int = 0  # actors of this slot that died before they were up
    info: dict | None = None  # pid, host, device: set once the actor is up
    job: Job | None = None  # the job it runs


def run_farm(
    jobs: list[Job],
    options: BatchOptions,
    farm: RayOptions,
    stop: threading.Event,
    *,
    on_result: Callable[[JobResult], None],
    on_chunk: Callable[[int, int, int], None] | None = None,
    on_load: Callable[[str, object, str], None] | None = None,
    on_worker: Callable[[int, dict], None] | None = None,
    notice: Callable[[str], None] | None = None,
) -> bool:
    """Run `jobs` on Ray actors, reporting each result as it finishes; returns True if
    interrupted. Jobs that end before model work (complete, bad input) are reported by the
    driver before Ray starts. `on_worker(slot, info)`: an actor is up (pid, host, device);
    `notice`: one-line news (a worker died, its job retried)."""
    ray = import_ray()
    routes = Routes(options)  # the driver's: presets for the checks, never a model
    todo: deque[Job] = deque()
    connected = ray.is_initialized()
    try:
        for job in jobs:
            if stop.is_set():
                return True
            res = JobResult(job.line, job.image, job.audio, job.out, "failed")
            try:
                checked = check_job(job, routes)
            except Exception as exc:  # noqa: BLE001 - a bad job (or a bug): it fails, the batch goes on
                checked = record_failure(res, exc)
            if isinstance(checked, JobResult):
                on_result(checked)
            else:
                todo.append(job)
        if not todo:
            return False
        if not connected:
            _connect(ray, farm.address)
    except KeyboardInterrupt:  # before any job ran: nothing to stop
        stop.set()
        if not connected and ray.is_initialized():
            ray.shutdown()
        return True
    try:
        return _Farm(ray, routes, farm, on_result, on_chunk, on_load, on_worker, notice).run(todo, stop)
    finally:
        if not connected:
            ray.shutdown()


def _connect(ray, address: str) -> None:
    on_term = signal.getsignal(signal.SIGTERM)
    try:
        ray.init(address=address, include_dashboard=False, logging_level="warning")
    except Exception as exc:  # noqa: BLE001 - Ray's connection errors have no common type
        raise FlowactError(f"cannot start or reach Ray at '{address}': {_first_line(exc)}") from exc
    finally:
        if on_term is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, on_term)  # ray.init's own handler would skip the clean stop


class _Farm:
    """The driver's loop: actors that are up get the next job, finished jobs are reported as they
    come (ray.wait), dead actors are replaced and their jobs queued again."""

    def __init__(self, ray, routes, farm, on_result, on_chunk, on_load, on_worker, notice):
        self.ray, self.routes, self.farm = ray, routes, farm
        self.on_result, self.on_chunk, self.on_load = on_result, on_chunk, on_load
        self.on_worker, self.notice = on_worker or (lambda slot, info: None), notice or (lambda text: None)
        o = routes.options
        gpus = int(ray.cluster_resources().get("GPU", 0))
        if o.device.startswith("cuda") and not gpus:
            raise FlowactError("--device cuda requested but the Ray cluster has no GPUs")
        if o.device not in ("auto", "cpu") and not o.device.startswith("cuda"):
            raise FlowactError(f"unknown device '{o.device}' (use auto, cpu or cuda)")
        biggest = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")), default=0)
        if farm.cpus > biggest:
            raise FlowactError(f"--ray-cpus {farm.cpus:g}: no node of the Ray cluster has that many CPUs ({biggest:g})")
        self.gpus = gpus if o.device != "cpu" else 0
        self.device = "cuda" if self.gpus else "cpu"  # an actor sees only its own GPU, as cuda:0
        cpus = ray.cluster_resources().get("CPU", 1)
        self.count = farm.actors or (self.gpus or max(1, int(cpus // farm.cpus)))
        self.threads = o.threads or max(1, int(farm.cpus))
        self.actor_class = ray.remote(FarmWorker).options(
            num_cpus=farm.cpus, num_gpus=1 if self.gpus else 0, max_concurrency=2
        )
        lost = (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError, ray.exceptions.ObjectLostError)
        self.lost = lost + (ray.exceptions.ActorUnschedulableError,)  # the actor is gone, not the job bad
        self.slots: list[_Slot] = []
        self.attempts: dict[int, int] = {}  # manifest line -> times its actor died under it
        self.running: dict = {}  # render ref -> slot
        self.starting: dict = {}  # info ref -> slot
        self.why_gone = ""  # why the last actor that never came up died

    def _start(self, index: int, failed_starts: int = 0) -> None:
        slot = _Slot(index, self.actor_class.remote(self.routes.options, self.device, self.threads), failed_starts)
        self.starting[slot.actor.info.remote()] = slot
        if index < len(self.slots):
            self.slots[index] = slot
        else:
            self.slots.append(slot)

    def run(self, todo: deque, stop: threading.Event) -> bool:
        for i in range(min(self.count, len(todo))):
            self._start(i)
        halted, last_poll = False, 0.0
        try:
            while self.running or (todo and not halted):
                try:
                    if not halted:
                        self._dispatch(todo)
                    waiting = list(self.running) + list(self.starting)
                    if not waiting:
                        if todo and not halted:
                            raise FlowactError(
                                f"no Ray worker could start ({self.why_gone}); is flowact installed on every node?"
                            )
                        continue
                    ready, _ = self.ray.wait(waiting, timeout=POLL_SECONDS)
                    for ref in ready:
                        if ref in self.starting:
                            self._started(ref)
                        else:
                            self._finished(ref, todo, stopping=halted or stop.is_set())
                    if self.on_chunk and time.monotonic() - last_poll > 2 * POLL_SECONDS:
                        last_poll = time.monotonic()
                        self._poll_progress()
                except KeyboardInterrupt:
                    stop.set()
                if stop.is_set() and not halted:  # running jobs stop at their next chunk
                    halted = True
                    for slot in self.slots:
                        if slot.job is not None:
                            slot.actor.halt.remote()
        finally:
            for slot in self.slots:
                self.ray.kill(slot.actor)
        return halted

    def _dispatch(self, todo: deque) -> None:
        for slot in self.slots:
            while slot.info is not None and slot.job is None and todo:
                self._submit(slot, todo.popleft())

    def _submit(self, slot: _Slot, job: Job) -> None:
        try:
            files = _inputs(job)
        except FlowactError as exc:  # gone since the check: this job fails, the batch goes on
            self.on_result(record_failure(JobResult(job.line, job.image, job.audio, job.out, "failed"), exc))
            return
        slot.job = job
        self.running[slot.actor.render.remote(job, self.routes.preset(job.preset), files)] = slot

    def _started(self, ref) -> None:
        slot = self.starting.pop(ref)
        try:
            slot.info = self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            self.ray.kill(slot.actor)
            n, self.why_gone = slot.failed_starts + 1, _first_line(exc)
            if n <= self.farm.retries:
                self.notice(f"ray: worker {slot.index} failed to start ({self.why_gone}); starting it again")
                self._start(slot.index, n)
            else:
                self.notice(f"ray: worker {slot.index} failed to start {n} times ({self.why_gone}); giving up on it")
            return
        self.on_worker(slot.index, slot.info)

    def _finished(self, ref, todo: deque, stopping: bool) -> None:
        slot = self.running.pop(ref)
        job, slot.job = slot.job, None
        try:
            r, data, loads = self.ray.get(ref)
        except self.lost as exc:
            self.ray.kill(slot.actor)  # dead, or unreachable: it never takes work again
            if not stopping:
                self._start(slot.index)
            self._lost(job, exc, slot, todo, stopping)
            return
        except self.ray.exceptions.RayError as exc:  # the actor's method raised: a bug in the farm
            r, data, loads = record_failure(JobResult(job.line, job.image, job.audio, job.out, "failed"), exc), None, []
        for load in loads:
            if self.on_load:
                self.on_load(*load)
        if data is not None:
            try:
                _place(job, data)
            except FlowactError as exc:
                r.status, r.frames, r.seconds, r.realtime_factor = "failed", 0, 0.0, None
                record_failure(r, exc)
        self.on_result(r)

    def _lost(self, job: Job, exc: BaseException, slot: _Slot, todo: deque, stopping: bool) -> None:
        who = f"worker {slot.index}" + (f" (pid {slot.info['pid']} on {slot.info['host']})" if slot.info else "")
        why = _first_line(exc)
        if stopping:
            r = JobResult(job.line, job.image, job.audio, job.out, "failed", interrupted=True)
            r.error = "interrupted (its worker died while stopping)"
            self.on_result(r)
            return
        n = self.attempts[job.line] = self.attempts.get(job.line, 0) + 1
        if n <= self.farm.retries:
            self.notice(f"ray: {who} died running line {job.line} ({why}); retrying it ({n} of {self.farm.retries})")
            todo.appendleft(job)
            return
        self.notice(f"ray: {who} died running line {job.line} ({why}); no retries left")
        error = f"its Ray worker died ({'1 try' if n == 1 else f'{n} tries'}; last: {why})"
        self.on_result(JobResult(job.line, job.image, job.audio, job.out, "failed", error=error, bug=True))

    def _poll_progress(self) -> None:
        asks = [s.actor.progress.remote() for s in self.slots if s.job is not None]
        if not asks:
            return
        done, _ = self.ray.wait(asks, num_returns=len(asks), timeout=POLL_SECONDS)
        for ref in done:
            try:
                chunks = self.ray.get(ref)
            except self.ray.exceptions.RayError:
                continue  # a dying actor: its render reports it
            if chunks is not None:
                self.on_chunk(*chunks)
