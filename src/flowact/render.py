"""`render` as a library call: an `Engine` holds one loaded model; `Engine.render()` streams
one picture + speech track into a video file (or stdout), chunk by chunk.

Stages (docs/architecture.md): generation (this thread) -> bounded queue -> decode thread ->
`VideoWriter` (its own thread) -> ffmpeg, each hand-off a `handoff.Stage`: end-of-stream and
failure get through however slow a stage is. Ctrl-C or a stage's error finalises the file so
what was made stays playable; the error (`StageFailed`, naming the stage) is raised after.
"""

from __future__ import annotations

import math
import os
import resource
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

import flowact_kernels

from . import weights as W
from .config import DEFAULT_PRESET, PhotoPreset, Preset, load_preset
from .errors import FlowactError
from .handoff import Stage, StageFailed
from .media.audio import Audio, load_audio
from .media.ffmpeg import VideoWriter, check_output, find_ffmpeg
from .media.image import fit_within, load_image
from .model import FlowActModel
from .model.quant import quantize_blocks
from .options import Int8Mode
from .precision import choose_dtype
from .stream.generator import AudioTrack, StreamGenerator, TextTrack

INT8_MODES = tuple(m.value for m in Int8Mode)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise FlowactError(f"unknown device '{device}' (use auto, cpu or cuda)")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise FlowactError("--device cuda requested but no CUDA GPU is available")
    return torch.device(device)


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


@dataclass(frozen=True)
class RenderInputs:
    """A job's inputs, loaded and validated (before any model work)."""

    reference: np.ndarray  # uint8 (height, width, 3) at the preset's size (photo route: the photo's framing)
    audio: Audio
    audio_path: Path
    face: object = None  # photo route: the reference's face mesh (photo/face.py), found before any model work


def load_reference(preset: Preset | PhotoPreset, image: str | Path, fit: str = "cover") -> tuple[np.ndarray, object]:
    """The reference picture as the preset's route takes it, and its face mesh (photo route, else
    None): the toon route fits it to the preset's size (`fit`); the photo route keeps its framing,
    scaled to fit, and finds its face, so a photo without one fails before any model loads."""
    if isinstance(preset, PhotoPreset):
        from .photo.face import analyse

        reference = fit_within(image, preset.video.width, preset.video.height)
        return reference, analyse(reference, name=str(image))
    return load_image(image, preset.video.width, preset.video.height, fit), None


def prepare_inputs(
    preset: Preset | PhotoPreset, image: str | Path, audio: str | Path, fit: str = "cover"
) -> RenderInputs:
    reference, face = load_reference(preset, image, fit)
    return RenderInputs(reference, load_audio(audio, preset.audio.sample_rate), Path(audio), face)


def default_threads(preset: Preset) -> int:
    """CPU intra-op threads. With decode overlapped, generation and decode each run their
    own parallel regions at once; torch's thread count is process-wide, so each gets half
    the cores. Two full-width OpenMP teams on the same cores stall at every barrier (on a
    busy 2-core machine a 2-thread team measured ~14x slower than a 1-thread one)."""
    cores = os.cpu_count() or 1
    return max(1, cores // 2) if preset.stream.overlap_decode else cores


class Engine:
    """One loaded model for one preset on one device; renders many jobs."""

    def __init__(
        self,
        preset: Preset,
        model: FlowActModel,
        source: W.WeightsSource,
        device: torch.device,
        dtype: torch.dtype,
        threads: int,
        dtype_why: str = "preset",
        int8: str = "off",
    ):
        self.preset, self.model, self.source = preset, model, source
        self.device, self.dtype, self.threads = device, dtype, threads
        self.dtype_why = dtype_why  # how the dtype was chosen: --dtype, preset, or auto (CPU bf16 check)
        self.int8 = int8  # "on", "off", or "off (why)": the transformer's block linears (model/quant.py)

    @classmethod
    def load(
        cls,
        preset: str | Preset = DEFAULT_PRESET,
        *,
        device: str = "auto",
        dtype: str | None = None,
        weights: str | Path | None = None,
        random_weights: bool = False,
        seed: int = 0,
        threads: int | None = None,
        lips: bool = True,
        int8: str = "auto",
    ) -> "Engine":
        """`lips=False` leaves a preset's lip refiner out: frames as the VAE decodes them.
        `dtype` None: the preset's for the device, except a CPU's bfloat16 becomes float32
        where the CPU only emulates bf16 (`precision.choose_dtype`). `int8`: "auto" quantises
        the transformer's block linears to int8 when it runs in float32 on a CPU (the fast
        path of a CPU without native bf16, model/quant.py), "on" asks for it, "off" never."""
        if int8 not in INT8_MODES:
            raise FlowactError(f"unknown int8 mode '{int8}' (use {', '.join(INT8_MODES)})")
        p = preset if isinstance(preset, (Preset, PhotoPreset)) else load_preset(preset)
        if isinstance(p, PhotoPreset):
            from .render_photo import PhotoEngine

            return PhotoEngine.load(p, device=device, weights=weights, random_weights=random_weights, seed=seed,
                                    threads=threads)  # fmt: skip
        dev = pick_device(device)
        choice = choose_dtype(dtype, p.dtype, dev.type)
        dname = choice.name
        if dname not in DTYPES:
            raise FlowactError(f"unknown dtype '{dname}' (use {', '.join(DTYPES)})")
        if dev.type == "cpu":
            torch.set_num_threads(threads or default_threads(p))
        source = W.resolve(p, weights=weights, random_weights=random_weights, seed=seed)
        torch.manual_seed(seed)
        # built on the target device: a 1.4B-parameter preset never round-trips through host RAM
        with torch.device(dev):
            model = FlowActModel(p)
        W.load_into(model, source)
        if not lips:
            model.lips = None
        model.eval().to(device=dev, dtype=DTYPES[dname])
        int8_state = "off"
        if int8 == "on" or (int8 == "auto" and dev.type == "cpu" and dname == "float32"):
            model.dit, why = quantize_blocks(model.dit)
            if why and int8 == "on":
                raise FlowactError(f"--int8 on: {why}")
            int8_state = f"off ({why})" if why else "on"
        return cls(p, model, source, dev, DTYPES[dname], torch.get_num_threads(), choice.why, int8_state)

    def prepare_inputs(self, image: str | Path, audio: str | Path, fit: str = "cover") -> "RenderInputs":
        return prepare_inputs(self.preset, image, audio, fit)

    def conditions(self, compiled: bool = False) -> str:
        where = (
            torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else f"CPU x{self.threads} threads"
        )
        dtype = str(self.dtype).replace("torch.", "")
        parts = [
            where,
            f"{dtype} ({self.dtype_why})",
            f"compile {'on' if compiled else 'off'}",
            f"kernels {flowact_kernels.backend()}",
            f"NFE {len(self.preset.sampler_timesteps()) - 1}",
        ]
        if self.int8 != "off":
            parts.append("int8 transformer linears" if self.int8 == "on" else f"int8 {self.int8}")
        if self.preset.lips:
            parts.append(f"lip refiner {'on' if self.model.lips is not None else 'off'}")
        return ", ".join(parts)

    def render(
        self,
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
    ) -> RenderReport:
        """Stream one video from image + audio paths (or already `prepare_inputs`-ed
        `inputs`). `stop` (optional) ends the render early, like Ctrl-C does. `overlap`
        decodes in its own thread while the next chunk generates (default: the preset's
        `stream.overlap_decode`)."""
        t_request = time.perf_counter()
        p = self.preset
        overlap = p.stream.overlap_decode if overlap is None else overlap
        if inputs is None:
            inputs = self.prepare_inputs(image, audio, fit)
        run = self.run_class(self, inputs, out, t_request, seed, max_seconds, on_chunk, sync_timing)
        run.start(prompt, ffmpeg)
        decoder = Stage("decode", run.emit, p.stream.queue_chunks) if overlap else None
        failure: tuple[str, BaseException] | None = None  # (stage, error): the first stage that died
        interrupted = False
        try:
            failure = run.generate_all(decoder, stop)
            interrupted = stop is not None and stop.is_set()
        except KeyboardInterrupt:
            interrupted = True
        finally:
            # flush what was generated, then finalise the container (playable even if cut short)
            failure, interrupted, wstats = run.finish(decoder, failure, interrupted)
        if failure is not None:
            stage, exc = failure
            if isinstance(exc, FlowactError):
                raise exc
            raise StageFailed(stage, exc, run.out, run.writer.frames_written) from exc
        return run.report(wstats, interrupted)


class _RenderRun:
    """One `Engine.render`'s state and its phases: `start` (audio features, reference, the
    ffmpeg writer), `generate_all` (the chunk loop: audio tokens, transformer, hand-off),
    `emit` (decode and write one chunk: inline or in the decode stage), `finish` (flush the
    decode stage, finalise the file) and `report`."""

    gen_stage = "transformer"  # the stage whose time is the generator's (generator_fps)
    counted = "decode+encode"  # what e2e/RTF/TTFF count beside the generator

    def __init__(
        self,
        engine: Engine,
        inputs: RenderInputs,
        out: str | Path,
        t_request: float,
        seed: int,
        max_seconds: float | None,
        on_chunk: Callable[[ChunkEvent], None] | None,
        sync_timing: bool,
    ):
        self.engine, self.inputs, self.t_request, self.on_chunk = engine, inputs, t_request, on_chunk
        p = self.preset = engine.preset
        check_output(out)
        self.out = str(out)
        if self.out != "-" and Path(self.out).resolve() == Path(inputs.audio_path).resolve():
            raise FlowactError("output path is the input audio file", path=out)
        track = inputs.audio
        self.seconds = track.seconds if max_seconds is None else min(track.seconds, max_seconds)
        self.total = max(1, round(self.seconds * p.video.fps))
        self.chunks = math.ceil(self.total / p.frames_per_chunk)
        self.stages = {
            "load_inputs": time.perf_counter() - t_request,
            "audio": 0.0,
            "reference": 0.0,
            "transformer": 0.0,
            "decode": 0.0,
            "encode": 0.0,
        }  # seconds per stage
        self.chunk_ms: list[float] = []
        self.done_frames = 0
        self.seed = seed
        cuda = sync_timing and engine.device.type == "cuda"
        self.sync = (lambda: torch.cuda.synchronize(engine.device)) if cuda else (lambda: None)

    def start(self, prompt: str, ffmpeg: str | None) -> None:
        p, track, model = self.preset, self.inputs.audio, self.engine.model
        find_ffmpeg(ffmpeg)
        self.gen = StreamGenerator(model, self.seed)
        t0 = time.perf_counter()
        with torch.no_grad():
            self.audio = AudioTrack(model, track.samples[: int(self.seconds * track.rate) + 1], self.engine.device)
            self.text = TextTrack(model).tokens(prompt)
        self.sync()
        self.stages["audio"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        self.gen.start(self.inputs.reference)
        self.sync()
        self.stages["reference"] = time.perf_counter() - t0
        self.writer = VideoWriter(
            self.out,
            p.video.width,
            p.video.height,
            p.video.fps,
            audio=self.inputs.audio_path,
            ffmpeg=ffmpeg,
            shortest=True,
            queue_frames=2 * p.frames_per_chunk,
        )

    def emit(self, item: tuple[int, torch.Tensor, int, torch.Tensor]) -> None:
        k, z, keep, mel = item
        gen = self.gen
        # the first chunk decodes one latent frame at a time (streaming decode is exact per
        # latent frame): its first frames reach ffmpeg after part of the decode, not all of it
        for zp, mp in gen.split_latents(z, mel) if k == 0 else [(z, mel)]:
            t = time.perf_counter()
            frames = gen.decode(zp, mp)[:keep]
            self.stages["decode"] += time.perf_counter() - t
            keep -= len(frames)
            self.writer.write(frames)
            self.done_frames += len(frames)
        self._chunk_done(k)

    def _chunk_done(self, k: int) -> None:
        if self.on_chunk:
            self.on_chunk(
                ChunkEvent(k, self.chunks, self.done_frames, self.total, time.perf_counter() - self.t_request)
            )

    def generate(self, k: int) -> tuple[int, torch.Tensor, int, torch.Tensor]:
        """Chunk k's audio tokens and latents -> the decode stage's item (k, latents, frames to keep, mel windows)."""
        C, per = self.preset.stream.chunk_latents, self.preset.frames_per_chunk
        t = time.perf_counter()
        with torch.no_grad():
            a, mel = self.audio.chunk(k * C, C)
        self.sync()
        t1 = time.perf_counter()
        self.stages["audio"] += t1 - t
        z = self.gen.chunk(k, a, self.text)
        self.sync()
        dt = time.perf_counter() - t1
        self.stages["transformer"] += dt
        self.chunk_ms.append(dt * 1000)
        return k, z, min(per, self.total - k * per), mel

    def generate_all(self, decoder: Stage | None, stop: threading.Event | None) -> tuple[str, BaseException] | None:
        """The chunk loop; returns the (stage, error) that ended it early, if one did."""
        for k in range(self.chunks):
            if (decoder is not None and decoder.error is not None) or (stop is not None and stop.is_set()):
                return None
            try:
                item = self.generate(k)
            except Exception as exc:  # noqa: BLE001 - raised once the file is finalised
                return "generation", exc
            if decoder is None:
                try:
                    self.emit(item)
                except Exception as exc:  # noqa: BLE001 - raised once the file is finalised
                    return "decode", exc
            elif not decoder.send(item):
                return None  # the decode stage died; `finish` collects its error
        return None

    def finish(self, decoder: Stage | None, failure, interrupted: bool):
        """Flush the decode stage, finalise the container; returns (failure, interrupted, writer stats)."""
        if decoder is not None:
            try:
                decoder.finish()
            except KeyboardInterrupt:  # a second Ctrl-C while flushing: stop decoding, still finalise
                interrupted = True
            if decoder.error is not None:
                failure = ("decode", decoder.error)
        t = time.perf_counter()
        try:
            wstats = self.writer.close()
        except FlowactError:
            if failure is None:
                raise
            wstats = None
        self.stages["encode"] = (time.perf_counter() - t) + (wstats.write_seconds if wstats else 0.0)
        return failure, interrupted, wstats

    def report(self, wstats, interrupted: bool) -> RenderReport:
        e, p = self.engine, self.preset
        wall = time.perf_counter() - self.t_request
        frames = wstats.frames
        return RenderReport(
            output=self.out,
            preset=p.name,
            weights=e.source.describe(),
            device=str(e.device),
            dtype=str(e.dtype).replace("torch.", ""),
            threads=e.threads,
            frames=frames,
            chunks=len(self.chunk_ms),
            fps=p.video.fps,
            video_seconds=frames / p.video.fps,
            audio_seconds=self.inputs.audio.seconds,
            wall_seconds=wall,
            ttff_seconds=(wstats.first_frame_at - self.t_request) if wstats.first_frame_at else None,
            e2e_fps=frames / wall,
            generator_fps=frames / max(self.stages[self.gen_stage], 1e-9),
            realtime_factor=(frames / p.video.fps) / wall,
            chunk_ms=self.chunk_ms,
            stages={k: round(v, 4) for k, v in self.stages.items()},
            peak_memory_mb=peak_memory_mb(e.device),
            interrupted=interrupted,
            conditions=e.conditions() + f", {self.counted} counted in e2e/RTF/TTFF",
        )


Engine.run_class = _RenderRun  # the render's phases; PhotoEngine has its own
