"""Audio front end: 16 kHz -> log-mel (10 ms hop, 4 mel frames per 25 fps video frame) ->
a small conv encoder that gives `tokens_per_latent` tokens for each latent frame.

Each latent frame sees a fixed window of mel frames: its own 160 ms plus `context_ms`
before and `lookahead_ms` after (lips anticipate sound), so the token shape is static and a
chunk's tokens depend only on audio up to its end + look-ahead (streamable).

With `audio.frame_tokens` the encoder is an *ear* (the lip refiner's design, model/lips.py):
1-D convs at the mel's 10 ms resolution, then one token per video frame, pooled over that
frame's own 40 ms and the 40 ms after (lips move ahead of the sound), carrying beside its
features the frame's mouth parameters (the world's five visemes) predicted by a small head.
The head is what `flowact train --stage audio` pre-trains on the world's labels, so the
tokens say how the mouth is shaped before the transformer has learnt anything.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import AudioConfig

VISEMES = 5  # the world's mouth parameters (world/visemes.py MOUTH_KEYS), each in [0, 1]

HOP = 160  # 10 ms at 16 kHz
N_FFT = 400  # 25 ms window
LOG_FLOOR = math.log(1e-5)


def mel_filterbank(
    bins: int, n_fft: int = N_FFT, rate: int = 16_000, fmin: float = 20.0, fmax: float = 7600.0
) -> np.ndarray:
    """(bins, n_fft//2 + 1) triangular filters on the HTK mel scale, area-normalised."""

    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10 ** (m / 2595.0) - 1.0)

    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), bins + 2))
    freqs = np.linspace(0, rate / 2, n_fft // 2 + 1)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    fb = np.maximum(0.0, np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)))
    return (fb * (2.0 / (hi - lo))).astype(np.float32)


class LogMel(nn.Module):
    def __init__(self, bins: int):
        super().__init__()
        self.register_buffer("fb", torch.from_numpy(mel_filterbank(bins)), persistent=False)
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)

    def forward(self, samples: torch.Tensor) -> torch.Tensor:
        """samples (n,) float32 at 16 kHz -> (mel_frames, bins), mel frame m centred at m*10 ms."""
        # always float32: the model may run in bf16, the spectrum should not
        spec = torch.stft(samples.float(), N_FFT, HOP, window=self.window.float(), center=True, return_complex=True)
        power = spec.abs().pow(2)  # (freq, frames)
        mel = (self.fb.float() @ power).clamp_min(1e-5).log()
        return ((mel - LOG_FLOOR) / 8.0 - 1.0).T  # roughly [-1, 1]


class Ear:
    """The ear that the frame-token audio encoder and the lip refiner (lips.py) share, mixed into
    their modules (its parameters keep the names ear_in, ear_mid, ear_out, ear_head): 1-D convs
    over a latent frame's mel window at 10 ms, then one feature per video frame, pooled over the
    frame's own mel frames and as many after (lips move ahead of the sound), and a head that reads
    the frame's 5 mouth parameters from the feature and the frame's place in the latent frame."""

    def _init_ear(self, mel_bins: int, width: int, temporal: int) -> None:
        self.ear_in = nn.Conv1d(mel_bins, width, 5, padding=2)
        self.ear_mid = nn.Conv1d(width, width, 5, padding=2)
        self.ear_out = nn.Conv1d(width, width, 3, padding=1)
        self.ear_head = nn.Sequential(nn.Linear(width + temporal, 2 * width), nn.SiLU(), nn.Linear(2 * width, VISEMES))

    def hear(self, windows: torch.Tensor, context: int, per_frame: int, temporal: int):
        """windows (b, n, window, bins) -> (features (b*n, T, width), mouth-parameter logits (b*n, T, 5));
        `context`: mel frames before the latent frame's own in a window, `per_frame` per video frame."""
        b, n, win, bins = windows.shape
        x = windows.reshape(b * n, win, bins).transpose(1, 2).to(self.ear_in.weight.dtype)
        x = F.gelu(self.ear_in(x))
        x = F.gelu(self.ear_mid(x)) + x
        x = F.gelu(self.ear_out(x)) + x  # (b*n, width, window)
        feats = [x[:, :, context + i * per_frame : context + (i + 2) * per_frame].mean(dim=2) for i in range(temporal)]
        f = torch.stack(feats, dim=1)  # (b*n, T, width)
        pos = torch.eye(temporal, device=f.device, dtype=f.dtype).expand(f.shape[0], -1, -1)
        return f, self.ear_head(torch.cat([f, pos], dim=-1))


class AudioEncoder(nn.Module, Ear):
    """Mel windows (batch, latents, window, bins) -> tokens (batch, latents * tokens_per_latent, width)."""

    def __init__(self, cfg: AudioConfig, latent_video_frames: int = 4):
        super().__init__()
        self.cfg = cfg
        self.mel = LogMel(cfg.mel_bins)
        self.context = cfg.context_ms // 10
        self.lookahead = cfg.lookahead_ms // 10
        self.per_latent = latent_video_frames * 4  # mel frames covered by one latent frame
        self.window = self.context + self.per_latent + self.lookahead
        w = cfg.width
        self.temporal = latent_video_frames
        if cfg.frame_tokens:
            self._init_ear(cfg.mel_bins, w, self.temporal)
            self.proj = nn.Linear(w + VISEMES, w)
        else:
            self.conv1 = nn.Conv1d(cfg.mel_bins, w, 3, padding=1)
            self.conv2 = nn.Conv1d(w, w, 3, padding=1)
            self.conv3 = nn.Conv1d(w, w, 3, padding=1)
            self.proj = nn.Linear(w, w)

    def windows(self, mel: torch.Tensor, first_latent: int, count: int) -> torch.Tensor:
        """Mel windows for stream latent frames [first_latent, first_latent + count), where
        stream latent frame j >= 0 covers video frames [4j, 4j + 4). mel: (frames, bins),
        padded with silence outside. Returns (count, window, bins)."""
        start = first_latent * self.per_latent - self.context
        idx = start + torch.arange(count)[:, None] * self.per_latent + torch.arange(self.window)[None]
        silence = torch.full((1, mel.shape[1]), -1.0, dtype=mel.dtype, device=mel.device)
        padded = torch.cat([mel, silence])
        idx = torch.where((idx >= 0) & (idx < mel.shape[0]), idx, mel.shape[0]).to(mel.device)
        return padded[idx]

    def frame_features(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """frame_tokens: windows (b, n, window, bins) -> (features (b, n * T, width), visemes
        (b, n * T, 5) in [0, 1]), one row per video frame, T video frames per latent frame."""
        b, n = windows.shape[:2]
        f, logits = self.hear(windows, self.context, self.per_latent // self.temporal, self.temporal)
        vis = torch.sigmoid(logits)
        return f.reshape(b, n * self.temporal, -1), vis.reshape(b, n * self.temporal, VISEMES)

    def forward(self, windows: torch.Tensor, with_visemes: bool = False):
        """Tokens (b, n * tokens_per_latent, width); with `with_visemes` (frame_tokens only) also
        the per-frame mouth parameters (b, n * T, 5) the tokens carry."""
        if self.cfg.frame_tokens:
            f, vis = self.frame_features(windows)
            tokens = self.proj(torch.cat([f, vis.to(f.dtype)], dim=-1))
            return (tokens, vis) if with_visemes else tokens
        if with_visemes:
            raise ValueError("visemes need audio.frame_tokens")
        b, n, win, bins = windows.shape
        x = windows.reshape(b * n, win, bins).transpose(1, 2).to(self.conv1.weight.dtype)
        x = F.gelu(self.conv1(x))
        x = F.gelu(self.conv2(x)) + x
        x = F.gelu(self.conv3(x)) + x
        # pool the window to tokens_per_latent tokens (adaptive: window length fixed per preset)
        x = F.adaptive_avg_pool1d(x, self.cfg.tokens_per_latent)  # (b*n, w, tokens)
        x = self.proj(x.transpose(1, 2))
        return x.reshape(b, n * self.cfg.tokens_per_latent, -1)
