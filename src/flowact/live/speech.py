"""Audio that arrives while the stream runs.

`SpeechQueue`: the character's own speech. Files and PCM pieces are queued; each chunk takes
exactly its own samples (silence when nothing is queued), so the output's audio track and the
audio tokens the chunk was generated from are the same samples: sync by construction.

`ListenChannel`: the user's voice (a microphone or a file), consumed at wall-clock rate; only
the planner hears it, it is not mixed into the output.

`IncrementalAudio`: audio tokens for chunk k from the chunk's samples, the previous samples
(context) and the queued future (look-ahead), with the same static windows as `AudioTrack`.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import torch

RATE = 16_000


class SpeechQueue:
    """Pieces [samples, offset, command id] in play order."""

    def __init__(self):
        self._items: deque = deque()
        self.utterance_open = False  # a streamed utterance (speak_pcm final=false) is still arriving

    def push(self, samples: np.ndarray, key=None, final: bool = True) -> None:
        if len(samples):
            self._items.append([np.asarray(samples, np.float32), 0, key])
        self.utterance_open = not final

    def clear(self) -> None:
        self._items.clear()
        self.utterance_open = False

    @property
    def pending(self) -> int:
        return sum(len(s) - o for s, o, _ in self._items)

    def take(self, n: int) -> tuple[np.ndarray, list]:
        """The next n samples (zero-padded) and (key, position) of each piece whose first sample is among them."""
        out = np.zeros(n, np.float32)
        started, filled = [], 0
        while filled < n and self._items:
            item = self._items[0]
            samples, offset, key = item
            if offset == 0 and key is not None:
                started.append((key, filled))
            m = min(n - filled, len(samples) - offset)
            out[filled : filled + m] = samples[offset : offset + m]
            filled += m
            item[1] += m
            if item[1] >= len(samples):
                self._items.popleft()
        return out, started

    def peek(self, n: int) -> np.ndarray:
        out = np.zeros(n, np.float32)
        filled = 0
        for samples, offset, _ in self._items:
            if filled >= n:
                break
            m = min(n - filled, len(samples) - offset)
            out[filled : filled + m] = samples[offset : offset + m]
            filled += m
        return out


class ListenChannel:
    """User audio sources, each heard from its start time at real-time rate."""

    def __init__(self):
        self._sources: list[list] = []  # [start perf_counter, samples, consumed]
        self._stream: list | None = None  # the source that streamed pieces extend

    def add(self, samples: np.ndarray, start: float) -> None:
        self._sources.append([start, np.asarray(samples, np.float32), 0])

    def extend(self, samples: np.ndarray, arrival: float) -> None:
        """A piece of a streamed voice (listen_pcm, a microphone): heard right after the stream's
        previous piece while that still plays, else from its arrival. Pieces that come together are
        heard one after another, never on top of each other."""
        s = self._stream
        if s is not None and any(src is s for src in self._sources):
            start, old, used = s
            s[:] = [start + used / RATE, np.concatenate([old[used:], np.asarray(samples, np.float32)]), 0]
        else:
            self._stream = [arrival, np.asarray(samples, np.float32), 0]
            self._sources.append(self._stream)

    def poll(self, now: float) -> np.ndarray:
        """Samples heard since the last poll (sources mixed)."""
        pieces = []
        for src in self._sources:
            start, samples, used = src
            upto = min(len(samples), max(0, int((now - start) * RATE)))
            if upto > used:
                pieces.append(samples[used:upto])
                src[2] = upto
        self._sources = [s for s in self._sources if s[2] < len(s[1])]
        if not pieces:
            return np.zeros(0, np.float32)
        n = max(len(p) for p in pieces)
        mix = np.zeros(n, np.float32)
        for p in pieces:
            mix[: len(p)] += p
        return mix


class IncrementalAudio:
    """Chunk k's audio tokens from (previous samples | chunk samples | look-ahead samples).

    The log-mel is computed on a short slice whose start is a whole hop and which carries a
    margin of `MARGIN` hops on each side, so its frames equal the whole-file mel's frames at the
    same times (away from the file's very start); the windows are then taken as
    `AudioEncoder.windows` takes them.
    """

    MARGIN = 3  # hops; >= n_fft/2 samples so the STFT's edge padding never reaches kept frames

    def __init__(self, encoder, chunk_latents: int, device):
        from ..model.audio import HOP

        self.encoder, self.C, self.device = encoder, chunk_latents, device
        self.hop = HOP
        self.per_latent = encoder.per_latent  # mel frames per latent frame
        self.prefix_latents = max(1, math.ceil(encoder.context / self.per_latent))
        self.history_samples = (self.prefix_latents * self.per_latent + self.MARGIN) * HOP
        self.lookahead_samples = (encoder.lookahead + self.MARGIN) * HOP
        self.chunk_samples = chunk_latents * self.per_latent * HOP
        self._history = np.zeros(self.history_samples, np.float32)  # silence before the stream

    @torch.no_grad()
    def chunk(self, chunk_samples: np.ndarray, lookahead: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """chunk_samples: (C * per_latent * hop,) float32; lookahead: at least `lookahead_samples`
        (zeros where the future is unknown). Returns (tokens (1, C * tokens_per_latent, width),
        mel windows (1, C, window, bins): what a lip refiner reads); advances."""
        assert len(chunk_samples) == self.chunk_samples
        seg = np.concatenate([self._history, chunk_samples, lookahead[: self.lookahead_samples]])
        mel = self.encoder.mel(torch.from_numpy(seg).to(self.device))
        keep = self.prefix_latents * self.per_latent + self.C * self.per_latent + self.encoder.lookahead
        mel = mel[self.MARGIN : self.MARGIN + keep]
        win = self.encoder.windows(mel, self.prefix_latents, self.C)[None]
        self._history = np.concatenate([self._history, chunk_samples])[-self.history_samples :]
        return self.encoder(win), win

    def tokens(self, chunk_samples: np.ndarray, lookahead: np.ndarray) -> torch.Tensor:
        """The tokens of `chunk` alone (advances as it does)."""
        return self.chunk(chunk_samples, lookahead)[0]
