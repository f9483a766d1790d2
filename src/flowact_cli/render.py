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
from .config import DEFAULT_PRESET, Preset, load_preset
from .errors import FlowactError
from .handoff import Stage, StageFailed
from .media.audio import Audio, load_audio
from .media.ffmpeg import VideoWriter, check_output, find_ffmpeg
from .media.image import load_image
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


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    v = sorted(values)

    def q(p):
        return round(v[min(len(v) - 1, int(math.ceil(p * len(v))) - 1)], 2)

    return {"p50": q(0.5), "p95": q(0.95), "max": round(v[-1], 2)}


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


@dataclass(frozen=True)
class RenderInputs:
    """A job's inputs, loaded and validated (before any model work)."""

    reference: np.ndarray  # uint8 (height, width, 3) at the preset's size
    audio: Audio
    audio_path: Path


def prepare_inputs(preset: Preset, image: str | Path, audio: str | Path, fit: str = "cover") -> RenderInputs:
    reference = load_image(image, preset.video.width, preset.video.height, fit)
    return RenderInputs(reference, load_audio(audio, preset.audio.sample_rate), Path(audio))


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
        p = preset if isinstance(preset, Preset) else load_preset(preset)
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
        p = self.preset
        overlap = p.stream.overlap_decode if overlap is None else overlap
        t_request = time.perf_counter()
        if inputs is None:
            inputs = prepare_inputs(p, image, audio, fit)
        reference, track, audio = inputs.reference, inputs.audio, inputs.audio_path
        check_output(out)
        find_ffmpeg(ffmpeg)
        seconds = track.seconds if max_seconds is None else min(track.seconds, max_seconds)
        total = max(1, round(seconds * p.video.fps))
        per_chunk = p.frames_per_chunk
        chunks = math.ceil(total / per_chunk)
        out_str = str(out)
        if out_str != "-" and Path(out_str).resolve() == Path(audio).resolve():
            raise FlowactError("output path is the input audio file", path=out)

        stages = {
            "load_inputs": time.perf_counter() - t_request,
            "audio": 0.0,
            "reference": 0.0,
            "transformer": 0.0,
            "decode": 0.0,
            "encode": 0.0,
        }
        gen = StreamGenerator(self.model, seed)
        sync = (
            (lambda: torch.cuda.synchronize(self.device))
            if (sync_timing and self.device.type == "cuda")
            else (lambda: None)
        )

        t0 = time.perf_counter()
        with torch.no_grad():
            atrack = AudioTrack(self.model, track.samples[: int(seconds * track.rate) + 1], self.device)
            text = TextTrack(self.model).tokens(prompt)
        sync()
        stages["audio"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        gen.start(reference)
        sync()
        stages["reference"] = time.perf_counter() - t0

        writer = VideoWriter(
            out,
            p.video.width,
            p.video.height,
            p.video.fps,
            audio=audio,
            ffmpeg=ffmpeg,
            shortest=True,
            queue_frames=2 * per_chunk,
        )
        done_frames = [0]

        def emit(item: tuple[int, torch.Tensor, int, torch.Tensor]) -> None:
            k, z, keep, mel = item
            # the first chunk decodes one latent frame at a time (streaming decode is exact per
            # latent frame): its first frames reach ffmpeg after part of the decode, not all of it
            for zp, mp in gen.split_latents(z, mel) if k == 0 else [(z, mel)]:
                t = time.perf_counter()
                frames = gen.decode(zp, mp)[:keep]
                stages["decode"] += time.perf_counter() - t
                keep -= len(frames)
                writer.write(frames)
                done_frames[0] += len(frames)
            if on_chunk:
                on_chunk(ChunkEvent(k, chunks, done_frames[0], total, time.perf_counter() - t_request))

        decoder = Stage("decode", emit, p.stream.queue_chunks) if overlap else None
        failure: tuple[str, BaseException] | None = None  # (stage, error): the first stage that died
        chunk_ms: list[float] = []
        interrupted = False
        try:
            for k in range(chunks):
                if (decoder is not None and decoder.error is not None) or (stop is not None and stop.is_set()):
                    break
                t = time.perf_counter()
                try:
                    with torch.no_grad():
                        a, mel = atrack.chunk(k * p.stream.chunk_latents, p.stream.chunk_latents)
                    sync()
                    t1 = time.perf_counter()
                    stages["audio"] += t1 - t
                    z = gen.chunk(k, a, text)
                    sync()
                except Exception as exc:  # noqa: BLE001 - raised once the file is finalised
                    failure = ("generation", exc)
                    break
                dt = time.perf_counter() - t1
                stages["transformer"] += dt
                chunk_ms.append(dt * 1000)
                item = (k, z, min(per_chunk, total - k * per_chunk), mel)
                if decoder is None:
                    try:
                        emit(item)
                    except Exception as exc:  # noqa: BLE001 - raised once the file is finalised
                        failure = ("decode", exc)
                        break
                elif not decoder.send(item):
                    break  # the decode stage died; its error is raised below
            interrupted = stop is not None and stop.is_set()
        except KeyboardInterrupt:
            interrupted = True
        finally:
            # flush what was generated, then finalise the container (playable even if cut short)
            if decoder is not None:
                try:
                    decoder.finish()
                except KeyboardInterrupt:  # a second Ctrl-C while flushing: stop decoding, still finalise
                    interrupted = True
                if decoder.error is not None:
                    failure = ("decode", decoder.error)
            t = time.perf_counter()
            try:
                wstats = writer.close()
            except FlowactError:
                if failure is None:
                    raise
                wstats = None
            stages["encode"] = (time.perf_counter() - t) + (wstats.write_seconds if wstats else 0.0)
        if failure is not None:
            stage, exc = failure
            if isinstance(exc, FlowactError):
                raise exc
            raise StageFailed(stage, exc, out_str, writer.frames_written) from exc

        wall = time.perf_counter() - t_request
        frames = wstats.frames
        return RenderReport(
            output=out_str,
            preset=p.name,
            weights=self.source.describe(),
            device=str(self.device),
            dtype=str(self.dtype).replace("torch.", ""),
            threads=self.threads,
            frames=frames,
            chunks=len(chunk_ms),
            fps=p.video.fps,
            video_seconds=frames / p.video.fps,
            audio_seconds=track.seconds,
            wall_seconds=wall,
            ttff_seconds=(wstats.first_frame_at - t_request) if wstats.first_frame_at else None,
            e2e_fps=frames / wall,
            generator_fps=frames / max(stages["transformer"], 1e-9),
            realtime_factor=(frames / p.video.fps) / wall,
            chunk_ms=chunk_ms,
            stages={k: round(v, 4) for k, v in stages.items()},
            peak_memory_mb=peak_memory_mb(self.device),
            interrupted=interrupted,
            conditions=self.conditions() + ", decode+encode counted in e2e/RTF/TTFF",
        )
