"""`render` as a library call: one picture + speech track into a video file (or stdout), chunk
by chunk, on a loaded route (routes/: toon or photo), which render, batch and bench share.

    route = load_route("auto" | preset, ...)          # routes/__init__.py
    report = render(route, "face.png", "talk.wav", "talk.mp4")

Stages (docs/architecture.md): generation (this thread: `ChunkStream.generate`) -> bounded queue
-> draw thread (`ChunkStream.draw`: VAE decode or warp) -> `VideoWriter` (its own thread) ->
ffmpeg, each hand-off a `handoff.Stage`: end-of-stream and failure get through however slow a
stage is. Ctrl-C or a stage's error finalises the file so what was made stays playable; the
error (`StageFailed`, naming the stage) is raised after.
"""

from __future__ import annotations

import math
import resource
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from .allocator import keep_freed_memory
from .errors import FlowactError
from .handoff import Stage, StageFailed
from .media.ffmpeg import VideoWriter, WriterStats, check_output, find_ffmpeg
from .routes import Chunk, RenderInputs, Route, load_inputs


@dataclass
class ChunkEvent:
    index: int
    chunks: int
    frames_done: int
    frames_total: int
    elapsed: float


@dataclass
class RenderReport:
    output: str
    preset: str
    weights: str
    device: str
    dtype: str
    threads: int
    frames: int
    chunks: int
    fps: float  # the video's frame rate
    video_seconds: float
    audio_seconds: float
    wall_seconds: float  # request -> file finalised
    ttff_seconds: float | None  # request -> first frame written into ffmpeg
    e2e_fps: float  # frames / wall (generation + decode + encode)
    generator_fps: float  # frames / transformer time (generation only)
    realtime_factor: float  # video seconds / wall seconds; >= 1 is real time
    chunk_ms: list[float] = field(default_factory=list)  # transformer time per chunk
    stages: dict = field(default_factory=dict)  # seconds per stage
    peak_memory_mb: float = 0.0
    interrupted: bool = False
    conditions: str = ""

    def to_dict(self) -> dict:
        d = asdict(self)
        lat = sorted(self.chunk_ms)
        d["chunk_latency_ms"] = percentiles(lat)
        del d["chunk_ms"]
        return d


def quantile(values: list[float], p: float) -> float | None:
    """Nearest-rank quantile (the value at rank ceil(p * n)), rounded to 0.01; None for no values."""
    if not values:
        return None
    v = sorted(values)
    return round(v[min(len(v) - 1, max(0, math.ceil(p * len(v)) - 1))], 2)


def percentiles(values: list[float]) -> dict:
    return {"p50": quantile(values, 0.5), "p95": quantile(values, 0.95), "max": quantile(values, 1.0)}


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def render(
    route: Route,
    image: str | Path | None,
    audio: str | Path | None,
    out: str | Path = "-",
    *,
    prompt: str = "",
    seed: int = 0,
    fit: str = "cover",
    ffmpeg: str | None = None,
    max_seconds: float | None = None,
    on_chunk: Callable[[ChunkEvent], None] | None = None,
    sync_timing: bool = False,
    stop: threading.Event | None = None,
    inputs: RenderInputs | None = None,
    overlap: bool | None = None,
    writes: bool = True,
) -> RenderReport:
    """Stream one video from image + audio paths (or already loaded `inputs`, routes.load_inputs).
    `stop` (optional) ends the render early, like Ctrl-C does. `overlap` draws (decodes or warps) in
    its own thread while the next chunk generates (default: the preset's). `writes=False`: no file
    (a sequence-parallel rank that does not write, render_seqpar.py)."""
    t_request = time.perf_counter()
    keep_freed_memory()  # once per process (allocator.py): a library caller's renders get it too
    p = route.preset
    overlap = p.overlap if overlap is None else overlap
    if inputs is None:
        inputs = load_inputs(p, image, audio, fit)
    run = _RenderRun(route, inputs, out, t_request, seed, max_seconds, on_chunk, sync_timing)
    run.start(prompt, ffmpeg, writes)
    drawer = Stage("decode", run.emit, p.queue_chunks) if overlap else None
    failure: tuple[str, BaseException] | None = None  # (stage, error): the first stage that died
    interrupted = False
    try:
        failure = run.generate_all(drawer, stop)
        interrupted = run.stopped  # a stop after the last chunk was generated keeps the whole video
    except KeyboardInterrupt:
        interrupted = True
    finally:
        # flush what was generated, then finalise the container (playable even if cut short)
        failure, interrupted, wstats = run.finish(drawer, failure, interrupted)
    if failure is not None:
        stage, exc = failure
        if isinstance(exc, FlowactError):
            raise exc
        raise StageFailed(stage, exc, run.out, run.writer.frames_written) from exc
    return run.report(wstats, interrupted)


class _RenderRun:
    """One `render`'s state and its phases: `start` (the route's picture and stream, the ffmpeg
    writer), `generate_all` (the chunk loop: `ChunkStream.generate`, hand-off), `emit` (draw and
    write one chunk: inline or in the draw stage), `finish` (flush the draw stage, finalise the
    file) and `report`."""

    def __init__(
        self,
        route: Route,
        inputs: RenderInputs,
        out: str | Path,
        t_request: float,
        seed: int,
        max_seconds: float | None,
        on_chunk: Callable[[ChunkEvent], None] | None,
        sync_timing: bool,
    ):
        self.route, self.inputs, self.t_request, self.on_chunk = route, inputs, t_request, on_chunk
        p = self.preset = route.preset
        check_output(out)
        self.out = str(out)
        if self.out != "-" and Path(self.out).resolve() == Path(inputs.audio_path).resolve():
            raise FlowactError("output path is the input audio file", path=out)
        track = inputs.audio
        self.seconds = track.seconds if max_seconds is None else min(track.seconds, max_seconds)
        self.total = max(1, round(self.seconds * p.video.fps))
        self.chunks = math.ceil(self.total / p.frames_per_chunk)
        # seconds per stage
        self.stages = {"load_inputs": time.perf_counter() - t_request, **{s: 0.0 for s in route.stages}}
        self.chunk_ms: list[float] = []
        self.done_frames = 0
        self.stopped = False  # the chunk loop ended early on `stop`
        self.seed = seed
        self.sync = route.sync() if sync_timing else (lambda: None)

    def start(self, prompt: str, ffmpeg: str | None, writes: bool = True) -> None:
        p, track = self.preset, self.inputs.audio
        find_ffmpeg(ffmpeg)
        self.prompt = prompt
        t0 = time.perf_counter()
        picture = self.route.prepare(self.inputs.reference, self.inputs.face)
        self.stages["reference"] += time.perf_counter() - t0
        samples = track.samples[: int(self.seconds * track.rate) + 1]
        self.stream = self.route.stream(picture, self.seed, samples, self.stages, self.sync, self.inputs.motion)
        h, w = self.inputs.reference.shape[:2]  # the preset's size (toon) or the photo's framing (photo)
        if not writes:
            self.writer = _NoFile(self.out)
            return
        self.writer = VideoWriter(self.out, w, h, p.video.fps, audio=self.inputs.audio_path, ffmpeg=ffmpeg,
                                  shortest=True, queue_frames=2 * p.frames_per_chunk)  # fmt: skip

    def emit(self, chunk: Chunk) -> None:
        for frames in self.stream.draw(chunk, early=True):
            self.writer.write(frames)
            self.done_frames += len(frames)
        if self.on_chunk:
            elapsed = time.perf_counter() - self.t_request
            self.on_chunk(ChunkEvent(chunk.index, self.chunks, self.done_frames, self.total, elapsed))

    def generate(self, k: int) -> Chunk:
        """Chunk k's model output, for the draw stage; its generator time goes to `chunk_ms`."""
        per = self.preset.frames_per_chunk
        gen = self.stream.gen_stage
        before = self.stages[gen]
        chunk = self.stream.generate(k, min(per, self.total - k * per), self.prompt)
        self.chunk_ms.append((self.stages[gen] - before) * 1000)
        return chunk

    def generate_all(self, drawer: Stage | None, stop: threading.Event | None) -> tuple[str, BaseException] | None:
        """The chunk loop; returns the (stage, error) that ended it early, if one did."""
        for k in range(self.chunks):
            if stop is not None and stop.is_set():
                self.stopped = True
                return None
            if drawer is not None and drawer.error is not None:
                return None
            try:
                item = self.generate(k)
            except Exception as exc:  # noqa: BLE001 - raised once the file is finalised
                return "generation", exc
            if drawer is None:
                try:
                    self.emit(item)
                except Exception as exc:  # noqa: BLE001 - raised once the file is finalised
                    return "decode", exc
            elif not drawer.send(item):
                return None  # the draw stage died; `finish` collects its error
        return None

    def finish(self, drawer: Stage | None, failure, interrupted: bool):
        """Flush the draw stage, close the stream, finalise the container; returns (failure,
        interrupted, writer stats)."""
        if drawer is not None:
            try:
                drawer.finish()
            except KeyboardInterrupt:  # a second Ctrl-C while flushing: stop drawing, still finalise
                interrupted = True
            if drawer.error is not None:
                failure = ("decode", drawer.error)
        if failure is None and not interrupted:
            try:
                self.stream.close()
            except Exception as exc:  # noqa: BLE001 - raised once the file is finalised
                failure = ("decode", exc)
        t = time.perf_counter()
        try:
            wstats = self.writer.close()
        except FlowactError:
            if failure is None:
                raise
            wstats = None
        self.stages["encode"] = (time.perf_counter() - t) + (wstats.write_seconds if wstats else 0.0)
        return failure, interrupted, wstats

    def _input_notes(self) -> str:
        """What the inputs decided: which face of the photo, a given motion track."""
        notes = []
        if getattr(self.inputs.face, "which", ""):
            notes.append(f"{self.inputs.face.which} of the photo")
        if self.inputs.motion is not None:
            notes.append(f"motion from the given track ({len(self.inputs.motion)} frames) instead of the motion engine")
        return "".join(", " + n for n in notes)

    def report(self, wstats, interrupted: bool) -> RenderReport:
        r, p = self.route, self.preset
        wall = time.perf_counter() - self.t_request
        frames = wstats.frames
        return RenderReport(
            output=self.out,
            preset=p.name,
            weights=r.source.describe(),
            device=str(r.device),
            dtype=str(r.dtype).replace("torch.", ""),
            threads=r.threads,
            frames=frames,
            chunks=len(self.chunk_ms),
            fps=p.video.fps,
            video_seconds=frames / p.video.fps,
            audio_seconds=self.inputs.audio.seconds,
            wall_seconds=wall,
            ttff_seconds=(wstats.first_frame_at - self.t_request) if wstats.first_frame_at else None,
            e2e_fps=frames / wall,
            generator_fps=frames / max(self.stages[self.stream.gen_stage], 1e-9),
            realtime_factor=(frames / p.video.fps) / wall,
            chunk_ms=self.chunk_ms,
            stages={k: round(v, 4) for k, v in self.stages.items()},
            peak_memory_mb=peak_memory_mb(r.device),
            interrupted=interrupted,
            conditions=r.conditions() + self._input_notes() + f", {r.counted} counted in e2e/RTF/TTFF",
        )


class _NoFile:
    """The writer of a render that writes no file: it counts what it is given."""

    def __init__(self, path: str):
        self.path, self.frames_written, self.first_frame_at = path, 0, None

    def write(self, frames) -> None:
        self.first_frame_at = self.first_frame_at or time.perf_counter()
        self.frames_written += len(frames)

    def close(self) -> WriterStats:
        return WriterStats(self.frames_written, self.first_frame_at, 0.0, self.path)
