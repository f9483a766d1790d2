"""The toon route: the video MMDiT draws every frame of a drawn character.

prepare:  the picture at the preset's size
stream:   VAE encode -> reference K/V in the memory bank (once), the decoder primed with it
generate: audio tokens (+ with model.motion_inject the chunk's motion: the motion engine's, the one
          the photo route warps by, or a given track) -> N sampler steps of the MMDiT over
          [bank | chunk] -> clean latents
draw:     causal VAE decode (+ lip refiner) -> frames
"""

from __future__ import annotations

import os

import numpy as np
import torch

import flowact_kernels

from .. import weights as W
from ..errors import FlowactError
from ..media.image import load_image
from ..model import FlowActModel
from ..model.quant import quantize_blocks
from ..options import Int8Mode
from ..precision import choose_dtype
from ..stream.generator import AudioTrack, StreamGenerator, TextTrack
from ..stream.motion import MotionSource
from ..world.motion_vector import video_input
from .base import Chunk, ChunkStream, LoadOptions, Route, pick_device

INT8_MODES = tuple(m.value for m in Int8Mode)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def default_threads(preset) -> int:
    """CPU intra-op threads. With decode overlapped, generation and decode each run their
    own parallel regions at once; torch's thread count is process-wide, so each gets half
    the cores. Two full-width OpenMP teams on the same cores stall at every barrier (on a
    busy 2-core machine a 2-thread team measured ~14x slower than a 1-thread one)."""
    cores = os.cpu_count() or 1
    return max(1, cores // 2) if preset.overlap else cores


class ToonRoute(Route):
    name = "toon"
    stages = ("audio", "reference", "transformer", "decode", "encode")
    counted = "decode+encode"

    def __init__(
        self, preset, model: FlowActModel, source, device, dtype, threads, dtype_why: str, int8: str, engine=None
    ):
        super().__init__(preset, source, device, dtype, threads)
        self.model = model
        self.engine = engine  # the motion engine (stream/motion.py), for a video model that reads motion
        if engine is not None:
            self.stages = ("audio", "reference", "motion", "transformer", "decode", "encode")
        self.dtype_why = dtype_why  # how the dtype was chosen: --dtype, preset, or auto (CPU bf16 check)
        self.int8 = int8  # "on", "off", or "off (why)": the transformer's block linears (model/quant.py)
        self.text = TextTrack(model)  # prompts encoded once per route, shared by its streams

    @classmethod
    def load(cls, preset, options: LoadOptions = LoadOptions()) -> "ToonRoute":
        """`lips=False` leaves a preset's lip refiner out: frames as the VAE decodes them.
        `dtype` None: the preset's for the device, except a CPU's bfloat16 becomes float32
        where the CPU only emulates bf16 (`precision.choose_dtype`). `int8`: "auto" quantises
        the transformer's block linears to int8 when it runs in float32 on a CPU (the fast
        path of a CPU without native bf16, model/quant.py), "on" asks for it, "off" never."""
        o, p = options, preset
        if o.int8 not in INT8_MODES:
            raise FlowactError(f"unknown int8 mode '{o.int8}' (use {', '.join(INT8_MODES)})")
        dev = pick_device(o.device)
        choice = choose_dtype(o.dtype, p.dtype, dev.type)
        dname = choice.name
        if dname not in DTYPES:
            raise FlowactError(f"unknown dtype '{dname}' (use {', '.join(DTYPES)})")
        if dev.type == "cpu":
            torch.set_num_threads(o.threads or default_threads(p))
        source = W.resolve(p, weights=o.weights, random_weights=o.random_weights, seed=o.seed)
        torch.manual_seed(o.seed)
        # built on the target device: a 1.4B-parameter preset never round-trips through host RAM
        with torch.device(dev):
            model = FlowActModel(p)
        W.load_into(model, source)
        if not o.lips:
            model.lips = None
        model.eval().to(device=dev, dtype=DTYPES[dname])
        int8_state = "off"
        if o.int8 == "on" or (o.int8 == "auto" and dev.type == "cpu" and dname == "float32"):
            model.dit, why = quantize_blocks(model.dit)
            if why and o.int8 == "on":
                raise FlowactError(f"--int8 on: {why}")
            int8_state = f"off ({why})" if why else "on"
        engine = _motion_engine(p, source) if p.model.motion_inject else None
        return cls(p, model, source, dev, DTYPES[dname], torch.get_num_threads(), choice.why, int8_state, engine)

    @classmethod
    def takes_motion(cls, preset) -> bool:
        return bool(preset.model.motion_inject)

    @staticmethod
    def load_picture(preset, image, fit: str = "cover", face: int | None = None):
        if face is not None:
            raise FlowactError(f"--face picks a face of a photograph; {preset.name} draws a character")
        return load_image(image, preset.video.width, preset.video.height, fit), None

    def prepare(self, reference: np.ndarray, face=None) -> np.ndarray:
        return reference

    def stream(self, picture, seed: int, samples=None, stages=None, sync=None, motion=None) -> "ToonStream":
        if motion is not None and self.engine is None:
            raise FlowactError(f"{self.preset.name}'s video model does not read a motion track")
        stages = {} if stages is None else stages
        return ToonStream(self, picture, seed, samples, stages, sync or (lambda: None), track=motion)

    @staticmethod
    def facts(preset, ranks: int = 1) -> dict:
        from ..stream.cost import chunk_cost

        p, cost = preset, chunk_cost(preset)
        out = {
            "resolution": f"{p.video.width}x{p.video.height}",
            "fps": p.video.fps,
            "chunk_latents": p.stream.chunk_latents,
            "chunk_frames": p.frames_per_chunk,
            "chunk_ms": 1000 * p.frames_per_chunk / p.video.fps,
            "steps": len(p.sampler_timesteps()) - 1,
            "params": cost.params,
            "params_total": sum(cost.params.values()),
            "flops_per_pass": cost.flops_per_pass,
            "flops_per_chunk": cost.flops_per_chunk,
            "tflops_per_s_for_realtime": cost.flops_per_chunk / (p.frames_per_chunk / p.video.fps) / 1e12,
        }
        out["cells"] = {
            "size": out["resolution"],
            "chunk": f"{out['chunk_latents']} lat = {out['chunk_frames']} fr ({out['chunk_ms']:.0f} ms)",
            "params": f"{out['params_total'] / 1e6:.1f}M",
            "cost": f"{out['flops_per_chunk'] / 1e9:,.0f}",
            "needs": f"{out['tflops_per_s_for_realtime']:.2f} TFLOP/s",
        }
        if ranks > 1:
            out["seq_parallel"] = seq_parallel_facts(p, ranks)
        return out

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
        if self.engine is not None:
            parts.append(f"motion engine NFE {len(self.engine.timesteps) - 1} (float32)")
        if self.int8 != "off":
            parts.append("int8 transformer linears" if self.int8 == "on" else f"int8 {self.int8}")
        if self.preset.lips:
            parts.append(f"lip refiner {'on' if self.model.lips is not None else 'off'}")
        return ", ".join(parts)


class ToonStream(ChunkStream):
    gen_stage = "transformer"

    def __init__(self, route: ToonRoute, picture: np.ndarray, seed: int, samples, stages, sync, gen=None, track=None):
        """`gen`: the generator to run (default a `StreamGenerator` of the route's model; a
        sequence-parallel rank's is sharded, render_seqpar.py). `track`: a given motion (frames, 16 or
        24), for a video model that reads motion."""
        super().__init__(stages, sync)
        model, self.route = route.model, route
        self.C = route.preset.stream.chunk_latents
        self.plans = True  # work out each chunk's draw plan while generating it (a rank that draws nothing: off)
        # the chunk's motion, for a video model that reads it: the motion engine's, or the given track
        self.motion = None if route.engine is None else MotionSource(route.engine, seed, samples, track)
        if samples is not None:
            with self.timed("audio"), torch.no_grad():
                self.audio = AudioTrack(model, samples, route.device)
        else:
            from ..live.speech import IncrementalAudio

            self.audio = IncrementalAudio(model.audio, self.C, route.device)
            self.chunk_samples = self.audio.chunk_samples
            self.lookahead_samples = self.audio.lookahead_samples
            if self.motion is not None:  # the motion engine hears further ahead than the video model's ear
                self.lookahead_samples = max(self.lookahead_samples, self.motion.lookahead_samples)
        self.gen = StreamGenerator(model, seed) if gen is None else gen
        with self.timed("reference"):  # the decoder primed aside, while chunk 0 is generated
            self.gen.start(picture, prime_aside=True)

    def generate(self, index, keep, prompt="", state=None, pcm=None, lookahead=None) -> Chunk:
        with self.timed("audio"), torch.no_grad():
            if pcm is None:
                a, mel = self.audio.chunk(index * self.C, self.C)
            else:
                a, mel = self.audio.chunk(pcm, lookahead)
            text = self.route.text.tokens(prompt)
        motion = plan = None
        draws = self.route.preset.vae.motion  # a decoder that reads motion draws the chunk's frames as it says
        if self.motion is not None:
            with self.timed("motion"):
                m = self.motion.chunk(index, prompt, state, pcm, lookahead)
                motion = torch.from_numpy(video_input(m))[None].to(self.route.device)
                if draws and self.plans and index > 0:  # what the decode lays over the frames, worked out here
                    plan = self.gen.draw_plan(motion)  # off its thread (chunk 0 may be decoded in pieces: there)
        with self.timed("transformer"):  # the previous chunk's memory pass first: this chunk's, once it is decoding
            z = self.gen.chunk(index, a, text, motion, defer_memory=True)
        return Chunk(index, (z, mel, motion if draws else None, plan), keep)

    def prime(self, prompts: list[str]) -> None:
        for p in prompts:
            self.route.text.tokens(p)

    def draw(self, chunk: Chunk, early: bool = False):
        z, mel, motion, plan = chunk.output
        keep = chunk.keep
        # streaming decode is exact per latent frame: the first chunk decoded one at a time, its first
        # frames reach the writer after part of the decode, not all of it (each piece planned in its decode)
        pieces = [(z, mel, motion, plan)]
        if early and chunk.index == 0:
            pieces = [(zp, mp, mo, None) for zp, mp, mo in StreamGenerator.split_latents(z, mel, motion)]
        for zp, mp, mo, pl in pieces:
            with self.timed("decode"):
                frames = self.gen.decode(zp, mp, mo, pl)[:keep]
            keep -= len(frames)
            yield frames


def _motion_engine(preset, source):
    """The motion engine beside a video model that reads motion: the bundled one (random with random weights)."""
    from ..model.motion import MotionConfig, MotionDiT
    from ..stream.motion import MotionEngine

    if source.kind == "random":
        return MotionEngine(MotionDiT(MotionConfig()).eval().requires_grad_(False))
    return MotionEngine.load()


def seq_parallel_facts(preset, ranks: int) -> dict:
    """One preset's per-rank costs on `ranks` sequence-parallel ranks, or why it cannot split that way."""
    from ..stream.cost import seq_parallel_cost

    try:
        sp = seq_parallel_cost(preset, ranks)
    except FlowactError as exc:
        return {"ranks": ranks, "heads": preset.model.heads, "error": str(exc)}
    return {
        "ranks": ranks,
        "dtype": sp.dtype,
        "flops_per_pass": sp.flops_per_pass,
        "flops_per_chunk": sp.flops_per_chunk,
        "sent_bytes_per_pass": sp.sent_bytes_per_pass,
        "sent_bytes_per_chunk": sp.sent_bytes_per_chunk,
        "reference_sent_bytes": sp.reference_sent_bytes,
        "bank_bytes": sp.bank_bytes,
        "dit_weight_bytes": sp.dit_weight_bytes,
    }
