"""One batch job: skip it if its output is complete, else render to a temporary name in
the output's folder and rename it into place only when the video is finalised.

Complete output: the final name exists (it only ever appears through `os.replace` of a
finalised file) and holds as many frames as the job asks for (`round(seconds * fps)`,
counted by demuxing). The frame check also catches a partial file left under that name
by something else, e.g. an interrupted single `flowact render -o`.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..config import Preset, load_preset
from ..errors import FlowactError
from ..handoff import StageFailed
from .manifest import Job


@dataclass(frozen=True)
class BatchOptions:
    """How every job runs (the CLI-level options that a manifest line cannot override)."""

    device: str = "auto"
    dtype: str | None = None
    weights: Path | None = None
    random_weights: bool = False
    weights_seed: int = 0  # seeds random weights: one model per preset for the whole batch
    fit: str = "cover"
    ffmpeg: str | None = None
    threads: int | None = None
    max_seconds: float | None = None
    force: bool = False
    int8: str = "auto"  # the transformer's int8 linears (routes.load_route)


@dataclass
class JobResult:
    line: int
    image: str
    audio: str
    output: str
    status: str  # ok | skipped | failed
    frames: int = 0
    seconds: float = 0.0  # video seconds
    fps: float = 0.0  # the video's frame rate
    wall_seconds: float = 0.0
    realtime_factor: float | None = None
    error: str | None = None
    bug: bool = False  # failed on an unexpected exception, not on bad input
    interrupted: bool = False
    traceback: str = ""

    def to_json(self) -> dict:
        return {
            "line": self.line,
            "input": {"image": self.image or None, "audio": self.audio or None},
            "output": self.output or None,
            "status": self.status,
            "frames": self.frames,
            "seconds": round(self.seconds, 4),
            "fps": self.fps,
            "wall_seconds": round(self.wall_seconds, 3),
            "realtime_factor": None if self.realtime_factor is None else round(self.realtime_factor, 3),
            "error": self.error,
        }


def partial_path(out: str | Path) -> Path:
    """Temporary name beside the output: hidden from `*.mp4` globs, same extension last
    (ffmpeg picks the container from it), same folder (so the rename is atomic)."""
    out = Path(out)
    return out.with_name(f".{out.stem}.partial{out.suffix}")


class Routes:
    """Presets and loaded routes of one process, by preset name: each loads once. A preset
    that failed to load fails every later job that names it, with the same message."""

    def __init__(
        self,
        options: BatchOptions,
        device: str | None = None,
        threads: int | None = None,
        on_load: Callable | None = None,
    ):
        self.options, self.device = options, device or options.device
        self.threads = threads if threads is not None else options.threads
        self.on_load = on_load
        self._presets: dict[str, Preset | FlowactError] = {}
        self._routes: dict[str, object] = {}
        self._lock = threading.Lock()  # overlapped jobs run in two threads

    def preset(self, name: str) -> Preset:
        return _remembered(self._presets, name, lambda: load_preset(name))

    def route(self, name: str):
        from ..routes import load_route

        def load():
            o = self.options
            e = load_route(
                self.preset(name),
                device=self.device,
                dtype=o.dtype,
                weights=o.weights,
                random_weights=o.random_weights,
                seed=o.weights_seed,
                threads=self.threads,
                int8=o.int8,
            )
            if self.on_load:
                self.on_load(name, e.source, str(e.device))
            return e

        with self._lock:
            return _remembered(self._routes, name, load)


def _remembered(cache: dict, key: str, make: Callable):
    """`make()` once per key; a FlowactError is remembered too and raised again for every
    later job that asks (a bad preset fails each of its jobs, not the batch, and once)."""
    if key not in cache:
        try:
            cache[key] = make()
        except FlowactError as exc:
            cache[key] = exc
    if isinstance(cache[key], FlowactError):
        raise cache[key]
    return cache[key]


def expected_frames(preset: Preset, seconds: float, max_seconds: float | None) -> int:
    """Frames `render` makes for `seconds` of audio."""
    s = seconds if max_seconds is None else min(seconds, max_seconds)
    return max(1, round(s * preset.video.fps))


def check_job(job: Job, routes: Routes):
    """Everything a job needs before model work: its skipped result when the output is already
    complete (and no --force), else its loaded, validated inputs (`render.RenderInputs`).
    Raises FlowactError for a bad job (malformed line, bad preset, bad input, unwritable output)."""
    from ..media.audio import load_audio
    from ..media.ffmpeg import check_output
    from ..media.probe import probe
    from ..routes import load_inputs

    if job.error:
        raise FlowactError(job.error)
    o = routes.options
    preset = routes.preset(job.preset)
    out = Path(job.out)
    if out.exists() and not o.force:
        want = expected_frames(preset, load_audio(job.audio, preset.sample_rate).seconds, o.max_seconds)
        info = probe(out, o.ffmpeg)
        if info.frames == want:
            fps = info.fps or preset.video.fps
            return JobResult(job.line, job.image, job.audio, job.out, "skipped", want, want / fps, fps)
    inputs = load_inputs(preset, job.image, job.audio, o.fit, face=job.face)  # bad input fails before model work
    check_output(out)
    return inputs


def record_failure(res: JobResult, exc: Exception) -> JobResult:
    """Why `res` failed: bad input (a FlowactError's message), or a bug (with its traceback)."""
    if isinstance(exc, StageFailed):  # a pipeline stage died on an unexpected error: a bug
        res.error, res.bug = str(exc), True
        res.traceback = "".join(traceback.format_exception(exc.error))
    elif isinstance(exc, FlowactError):
        res.error = str(exc)
    else:
        res.error, res.bug = f"internal error: {exc!r}", True
        res.traceback = "".join(traceback.format_exception(exc))
    return res


def run_job(
    job: Job,
    routes: Routes,
    *,
    stop=None,
    on_chunk: Callable | None = None,
    on_generated: Callable[[], None] | None = None,
) -> JobResult:
    """Run one job; never raises for a bad job. `on_generated` is called once the model is
    done with this job (only the decode/encode tail is left), or when the job ends."""
    res = JobResult(job.line, job.image, job.audio, job.out, "failed")
    t0 = time.perf_counter()
    tmp = partial_path(job.out) if job.out else None
    notified = [False]

    def generated():
        if not notified[0]:
            notified[0] = True
            if on_generated:
                on_generated()

    try:
        inputs = check_job(job, routes)
        if isinstance(inputs, JobResult):  # complete already: skipped
            res = inputs
            return res
        route = routes.route(job.preset)

        def chunk(ev):
            if on_chunk:
                on_chunk(job.line, ev.index + 1, ev.chunks)
            if ev.index + 1 == ev.chunks:
                generated()

        o = routes.options
        try:
            from ..render import render

            report = render(
                route,
                None,
                None,
                tmp,
                prompt=job.prompt,
                seed=job.seed,
                fit=o.fit,
                ffmpeg=o.ffmpeg,
                max_seconds=o.max_seconds,
                on_chunk=chunk,
                stop=stop,
                inputs=inputs,
            )
        except FlowactError:
            if stop is not None and stop.is_set():  # e.g. ffmpeg given no frames: the stop, not the input
                res.interrupted = True
                res.error = "interrupted (partial output removed)"
                return res
            raise
        if report.interrupted:  # stopped before its last chunk; one stopped later is whole and kept
            res.interrupted, res.error = True, "interrupted (partial output removed)"
            return res
        os.replace(tmp, job.out)
        res.status, res.frames, res.fps, res.seconds = "ok", report.frames, report.fps, report.video_seconds
        res.realtime_factor = report.realtime_factor
        return res
    except Exception as exc:  # noqa: BLE001 - a bad job or a bug: this job fails, the batch goes on
        return record_failure(res, exc)
    finally:
        res.wall_seconds = time.perf_counter() - t0
        if tmp is not None and res.status != "ok":
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
        generated()
