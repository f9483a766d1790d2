"""What the live loop asks for each chunk: its frames, from this chunk's speech samples (plus
the look-ahead that has arrived) and the planner's state and prompt. One maker per route:

- `ToonChunks`: the video model (audio tokens -> MMDiT over the memory bank -> VAE decode);
- `PhotoChunks`: the motion engine (16 numbers a frame) -> the photo rig's warp.

Both are stateful streams: chunk k follows chunk k-1 (memory bank, audio history).
"""

from __future__ import annotations

import numpy as np
import torch

from ..config import is_photo
from ..stream.generator import StreamGenerator, TextTrack
from .speech import RATE, IncrementalAudio


class ToonChunks:
    def __init__(self, engine, reference: np.ndarray, seed: int, like: "ToonChunks | None" = None):
        model = engine.model
        self.text = like.text if like is not None else TextTrack(model)  # prompts encoded once per session
        self.gen = StreamGenerator(model, seed)
        self.gen.start(reference)
        self.audio = IncrementalAudio(model.audio, engine.preset.stream.chunk_latents, engine.device)
        self.chunk_samples = self.audio.chunk_samples
        self.lookahead_samples = self.audio.lookahead_samples
        self.stage = "generation"  # the stage running now (named in a failure)

    def prime(self, prompts: list[str]) -> None:
        for p in prompts:
            self.text.tokens(p)

    @torch.no_grad()
    def frames(self, k: int, pcm: np.ndarray, lookahead: np.ndarray, prompt: str, state: str) -> np.ndarray:
        self.stage = "generation"
        a, mel = self.audio.chunk(pcm, lookahead)
        z = self.gen.chunk(k, a, self.text.tokens(prompt))
        self.stage = "decode"
        return self.gen.decode(z, mel)


class PhotoChunks:
    """The motion engine hears each chunk with its past and look-ahead (`MotionStream.audio_span`):
    the past is kept here, the look-ahead is what has arrived (zeros beyond)."""

    def __init__(self, engine, reference: np.ndarray, face, seed: int, like: "PhotoChunks | None" = None):
        from ..photo.rig import build_rig
        from ..stream.motion import MotionStream

        # the rig depends on the photo alone: built once per session
        self.rig = like.rig if like is not None else build_rig(reference, size=max(reference.shape[:2]), mesh=face)
        self.stream = MotionStream(engine.model, seed=seed)
        p = engine.preset
        self.chunk_samples = p.frames_per_chunk * (RATE // p.video.fps)
        a, b = self.stream.audio_span(1)  # chunk 1: away from the stream's start
        self.history_samples = max(0, self.chunk_samples - a)
        self.lookahead_samples = max(0, b - 2 * self.chunk_samples)
        self._history = np.zeros(self.history_samples, np.float32)  # silence before the stream
        self.stage = "generation"

    def prime(self, prompts: list[str]) -> None:
        pass

    def frames(self, k: int, pcm: np.ndarray, lookahead: np.ndarray, prompt: str, state: str) -> np.ndarray:
        from ..stream.motion import padded

        self.stage = "generation"
        pcm = pcm.astype(np.float32)
        # what is known, from `history_samples` before the chunk's start; the span it needs, cut from
        # that (zeros where it reaches past what has arrived)
        known = np.concatenate([self._history, pcm, lookahead[: self.lookahead_samples].astype(np.float32)])
        a, b = self.stream.audio_span(k)
        origin = k * self.chunk_samples - self.history_samples
        motion = self.stream.chunk(k, padded(known, (a - origin, b - origin)), prompt=prompt, state=state)
        if self.history_samples:
            self._history = np.concatenate([self._history, pcm])[-self.history_samples :]
        self.stage = "decode"
        return self.rig.render(motion)


def chunk_maker(engine, reference: np.ndarray, seed: int, face=None, like=None):
    """A fresh stream for the route of `engine`'s preset; `like`: an earlier maker of the same
    session (the warm-up's) whose per-session parts (prompt encoder, photo rig) are reused."""
    if is_photo(engine.preset):
        return PhotoChunks(engine, reference, face, seed, like)
    return ToonChunks(engine, reference, seed, like)
