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
    def __init__(self, engine, reference: np.ndarray, seed: int, text: TextTrack | None = None):
        model = engine.model
        self.text = text or TextTrack(model)
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

    def __init__(self, engine, reference: np.ndarray, face, seed: int):
        from ..photo.rig import build_rig
        from ..stream.motion import MotionStream

        self.rig = build_rig(reference, size=max(reference.shape[:2]), mesh=face)
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
        self.stage = "generation"
        ahead = np.zeros(self.lookahead_samples, np.float32)
        got = lookahead[: self.lookahead_samples]
        ahead[: len(got)] = got
        window = np.concatenate([self._history, pcm.astype(np.float32), ahead])
        a, b = self.stream.audio_span(k)
        start = k * self.chunk_samples
        # the span as audio_span wants it: cut (at the stream's start) or padded to its exact length
        lo = self.history_samples - (start - a)
        window = window[max(lo, 0) :]
        if lo < 0:
            window = np.concatenate([np.zeros(-lo, np.float32), window])
        window = np.pad(window, (0, max(0, (b - a) - len(window))))[: b - a]
        motion = self.stream.chunk(k, window, prompt=prompt, state=state)
        if self.history_samples:
            self._history = np.concatenate([self._history, pcm.astype(np.float32)])[-self.history_samples :]
        self.stage = "decode"
        return self.rig.render(motion)


def chunk_maker(engine, reference: np.ndarray, seed: int, face=None, text: TextTrack | None = None):
    if is_photo(engine.preset):
        return PhotoChunks(engine, reference, face, seed)
    return ToonChunks(engine, reference, seed, text)
