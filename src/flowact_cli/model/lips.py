"""The lip refiner: decoded frames + the chunk's audio tokens -> frames whose mouth follows the speech.

A small per-frame image network (an encoder-decoder with skips) that reads each frame and the
audio around it and adds a residual where the mouth should differ: out = frame + residual.
(A gated paint-over, frame * (1 - alpha) + paint * alpha, was tried first and learnt the
identity: alpha fell to zero everywhere within 50 steps, because the paint started as noise,
and with alpha at zero the paint gets no gradient.) It is trained (`flowact train --stage lips`) on the
synthetic world with the mouth *closed* in its input: the world redraws every training frame
with the mouth at rest, and the target is the frame as drawn. So nothing in the input says how
open the mouth is; the audio must. (A network that also sees the mouth as drawn learns to copy
it and leaves the audio unused: the audio-conditioned decoders measured in the README.)

The audio is the transformer's own audio tokens for the chunk: `tokens_per_latent` per latent
frame, each latent frame covering `temporal` video frames. A frame's audio feature is its latent
frame's tokens (context, the frame's own audio and the look-ahead) plus which of the latent's
video frames it is. From it a head predicts the frame's mouth parameters (the world's visemes:
open, width, round, closed, teeth), and the image network draws from those five numbers only.
Training supervises the parameters directly and feeds the image network the world's own
parameters half of the time, so the two halves learn apart: hearing a mouth shape, drawing it.
(Trained end to end from frames alone, the refiner did not get off the identity in 100 steps.)
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import LipsConfig

VISEMES = 5  # the world's mouth parameters (world/visemes.py MOUTH_KEYS), each in [0, 1]


class _Conv(nn.Sequential):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__(nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(min(8, cout // 4), cout), nn.SiLU())


class LipRefiner(nn.Module):
    def __init__(self, cfg: LipsConfig, audio_width: int, tokens_per_latent: int, temporal: int):
        super().__init__()
        self.cfg, self.temporal = cfg, temporal
        w = cfg.width
        self.audio_mlp = nn.Sequential(nn.LayerNorm(tokens_per_latent * audio_width + temporal),
                                       nn.Linear(tokens_per_latent * audio_width + temporal, 8 * w), nn.SiLU(),
                                       nn.Linear(8 * w, 4 * w), nn.SiLU(), nn.Linear(4 * w, VISEMES))
        self.cond = nn.Sequential(nn.Linear(VISEMES, 2 * w), nn.SiLU(), nn.Linear(2 * w, 2 * w))
        self.enc1 = _Conv(3, w, 2)           # /2
        self.enc2 = _Conv(w, 2 * w, 2)       # /4
        self.enc3 = _Conv(2 * w, 4 * w, 2)   # /8
        self.mid1 = _Conv(4 * w + 2 * w, 4 * w)
        self.mid2 = _Conv(4 * w, 4 * w)
        self.film = nn.Linear(2 * w, 8 * w)  # the audio also scales/shifts the bottleneck
        self.dec3 = _Conv(4 * w + 2 * w, 2 * w)  # /4, with enc2's skip
        self.dec2 = _Conv(2 * w + w, w)          # /2, with enc1's skip
        self.dec1 = _Conv(w + 3, w)              # /1, with the frame
        self.head = nn.Conv2d(w, 3, 3, 1, 1)     # the RGB residual
        with torch.no_grad():  # starts near the identity; every output pixel gets its own gradient
            self.head.weight.mul_(0.1)
            self.head.bias.zero_()

    def visemes(self, tokens: torch.Tensor, frames: int) -> torch.Tensor:
        """tokens (b, latents * tokens_per_latent, width) -> (b * frames, 5): each video frame's
        predicted mouth parameters; frames = latents * temporal."""
        b = tokens.shape[0]
        lat = frames // self.temporal
        per = tokens.reshape(b, lat, -1)  # (b, latents, tokens_per_latent * width)
        per = per[:, :, None].expand(b, lat, self.temporal, per.shape[-1])
        pos = torch.eye(self.temporal, device=tokens.device, dtype=per.dtype).expand(b, lat, -1, -1)
        x = torch.cat([per, pos], dim=-1).reshape(b * frames, -1)
        return torch.sigmoid(self.audio_mlp(x.to(self.head.weight.dtype)))

    def forward(self, frames: torch.Tensor, tokens: torch.Tensor, visemes: torch.Tensor | None = None) -> torch.Tensor:
        """frames (b, 3, T, H, W) in [-1, 1], T = latents * temporal; tokens (b, latents *
        tokens_per_latent, audio width). Returns refined frames, same shape. `visemes` (b * T, 5)
        replaces the predicted mouth parameters (training)."""
        b, _, T, H, W = frames.shape
        x = frames.permute(0, 2, 1, 3, 4).reshape(b * T, 3, H, W).to(self.head.weight.dtype)
        v = self.visemes(tokens, T) if visemes is None else visemes
        a = self.cond(v.to(x.dtype))  # (b*T, 2w)
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        h = self.mid1(torch.cat([e3, a[:, :, None, None].expand(-1, -1, *e3.shape[2:])], 1))
        scale, shift = self.film(a).chunk(2, dim=-1)
        h = self.mid2(h * (1 + scale[:, :, None, None]) + shift[:, :, None, None])
        h = self.dec3(torch.cat([F.interpolate(h, scale_factor=2.0), e2], 1))
        h = self.dec2(torch.cat([F.interpolate(h, scale_factor=2.0), e1], 1))
        h = self.dec1(torch.cat([F.interpolate(h, scale_factor=2.0), x], 1))
        y = x + self.head(h)
        return y.reshape(b, T, 3, H, W).permute(0, 2, 1, 3, 4).to(frames.dtype)
