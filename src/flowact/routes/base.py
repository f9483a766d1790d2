"""The seam between the routes: what every route does, and nothing else.

    route = load_route(preset, ...)                  # once: weights, device, dtype (routes/__init__.py)
    reference, face = route.load_picture(preset, image)  # before any model work (photo: the face mesh)
    picture = route.prepare(reference, face)         # once per picture: toon: the picture; photo: the rig
    stream = route.stream(picture, seed, samples)    # one character's stream (memory bank, audio history)
    for k in 0, 1, 2, ...:                           # the chunk loop (render.py, live/session.py)
        chunk = stream.generate(k, keep, prompt)     # the model's work: latents (toon) or motion (photo)
        for frames in stream.draw(chunk): ...        # the picture's work: VAE decode (toon) or warp (photo)

A stream hears a whole recording (`samples` given: render, batch, bench) or the live speech chunk
by chunk (`samples` None: `generate(..., pcm=, lookahead=)`), and keeps seconds per stage in
`stages` so every caller reports the same times.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from ..errors import FlowactError
from ..media.audio import Audio


@dataclass(frozen=True)
class RenderInputs:
    """A job's inputs, loaded and validated before any model work."""

    reference: np.ndarray  # uint8 (height, width, 3) as the route frames it (photo: the photo's framing)
    audio: Audio
    audio_path: Path
    face: object = None  # photo route: the reference's face mesh (photo/face.py), found before any model work
    motion: np.ndarray | None = None  # a given motion track (frames, 16) instead of the motion engine (--motion)


@dataclass(frozen=True)
class LoadOptions:
    """How a route loads: the command line's model options (each route says what it does with them)."""

    device: str = "auto"  # auto | cpu | cuda[:N]
    dtype: str | None = None  # None: the preset's for the device (toon: bf16 only on a CPU with native bf16)
    weights: str | Path | None = None  # a local .safetensors file instead of the preset's
    random_weights: bool = False
    seed: int = 0  # of random weights
    threads: int | None = None  # CPU threads (None: the route's default)
    lips: bool = True  # the toon preset's lip refiner
    int8: str = "auto"  # the toon transformer's int8 linears: auto | on | off


@dataclass
class Chunk:
    """What `generate` hands to `draw`: chunk `index`'s model output and how many of its frames to keep."""

    index: int
    # toon: (latents (1, zc, C, h, w), mel windows, the decoder's motion or None, its draw plan or None: model/vae.py
    # DrawPlan); photo: motion (frames, 16)
    output: object
    keep: int


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise FlowactError(f"unknown device '{device}' (use auto, cpu or cuda)")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise FlowactError("--device cuda requested but no CUDA GPU is available")
    return torch.device(device)


class ChunkStream(ABC):
    """One character's stream on one route. Chunks come in order 0, 1, 2, ..."""

    gen_stage: str  # the stage whose time is the generator's (per-chunk latency, generator fps)
    stage: str = "generation"  # the stage running now (named in a failure)

    def __init__(self, stages: dict[str, float], sync: Callable[[], None]):
        self.stages, self.sync = stages, sync

    @contextmanager
    def timed(self, stage: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.sync()
            self.stages[stage] = self.stages.get(stage, 0.0) + time.perf_counter() - t

    @abstractmethod
    def generate(
        self,
        index: int,
        keep: int,
        prompt: str = "",
        state: str | None = None,
        pcm: np.ndarray | None = None,
        lookahead: np.ndarray | None = None,
    ) -> Chunk:
        """Chunk `index`'s model output. `pcm` (the chunk's 16 kHz samples) and `lookahead` (what has
        arrived after it, zeros beyond) only for a live stream; a whole recording's stream cuts its own."""

    @abstractmethod
    def draw(self, chunk: Chunk, early: bool = False) -> Iterator[np.ndarray]:
        """The chunk's frames, uint8 (frames, H, W, 3), at most `chunk.keep` in all. `early`: a writer
        waits, so hand frames over as they are made where that costs little (photo: the first chunk's
        frames one by one; toon: the first chunk's latent frames), else the chunk at once."""

    def frames(self, index: int, prompt: str, state: str | None, pcm: np.ndarray, lookahead: np.ndarray) -> np.ndarray:
        """A live chunk, generated and drawn: uint8 (frames, H, W, 3); `stage` names the phase that failed."""
        return np.concatenate(list(self.live_parts(index, prompt, state, pcm, lookahead)))

    def live_parts(
        self, index: int, prompt: str, state: str | None, pcm: np.ndarray, lookahead: np.ndarray
    ) -> Iterator[np.ndarray]:
        """A live chunk, generated, then its frames in parts as they are drawn, uint8 (frames, H, W, 3)
        each: the live loop shows the first while the rest are drawn (here: the chunk at once; the photo
        route: frame by frame). `stage` names the phase that failed."""
        self.stage = "generation"
        chunk = self.generate(index, 1 << 30, prompt, state, pcm, lookahead)
        self.stage = "decode"
        yield from self.draw(chunk)
        self.stage = "generation"

    def snapshot(self):
        """The stream's state before its next chunk, for `restore` (the live loop then makes its newest
        chunk again, from a frame on, when speech arrives while it shows); None: this stream cannot (its
        live chunks then start speech at the next chunk)."""
        return None

    def restore(self, state) -> None:
        raise NotImplementedError

    def prime(self, prompts: list[str]) -> None:
        """Encode what will be asked for (a live stream's common prompts) before it is due."""

    def close(self) -> None:
        """After the last chunk is drawn (a stream that hands chunks to another process says so)."""


class Route(ABC):
    """One loaded model for one preset on one device; makes streams for many pictures."""

    name: str  # "toon" | "photo"
    stages: tuple[str, ...]  # the report's stages, in order (after "load_inputs")
    counted: str  # what end-to-end figures count beside the generator
    needs_face: bool = False  # the picture must show a face (load_picture finds it)
    reads_motion: bool = False  # a given motion track can drive it (--motion); `takes_motion` per preset

    def __init__(self, preset, source, device: torch.device, dtype: torch.dtype, threads: int):
        self.preset, self.source, self.device, self.dtype, self.threads = preset, source, device, dtype, threads

    @classmethod
    @abstractmethod
    def load(cls, preset, options: LoadOptions = LoadOptions()) -> "Route":
        """The preset's weights on its device; options that do not apply to the route are refused."""

    @classmethod
    def takes_motion(cls, preset) -> bool:
        """Whether a given motion track (--motion) can drive this preset."""
        return cls.reads_motion

    @staticmethod
    @abstractmethod
    def load_picture(
        preset, image: str | Path, fit: str = "cover", face: int | None = None
    ) -> tuple[np.ndarray, object]:
        """The reference picture as this route takes it, and its face mesh (or None), before any model loads;
        `face`: which face of a group photo (1-based, left to right; None: the most confident)."""

    @abstractmethod
    def prepare(self, reference: np.ndarray, face=None) -> object:
        """What the route keeps per picture (`load_picture`'s), built once (toon: the picture; photo: the rig)."""

    @abstractmethod
    def stream(self, picture, seed: int, samples=None, stages=None, sync=None, motion=None) -> ChunkStream:
        """A fresh stream of `picture` (from `prepare`); `samples`: the whole recording at 16 kHz
        (None: live, heard chunk by chunk); `motion`: a given track (frames, 16), where `reads_motion`."""

    @staticmethod
    @abstractmethod
    def facts(preset, ranks: int = 1) -> dict:
        """`flowact presets`: the preset's size, chunk, steps, parameters and cost on this route, with
        "cells", the route's own words for the table (`ranks` > 1: per sequence-parallel rank, "seq_parallel")."""

    @abstractmethod
    def conditions(self, compiled: bool = False) -> str:
        """Device, dtype and what runs: every speed figure states it."""

    def sync(self) -> Callable[[], None]:
        """What makes a stage's time honest on this device (a CUDA sync), else nothing."""
        if self.device.type == "cuda":
            return lambda: torch.cuda.synchronize(self.device)
        return lambda: None
