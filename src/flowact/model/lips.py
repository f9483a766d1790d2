"""The lip refiner: decoded frames + the chunk's log-mel windows -> frames whose mouth follows the speech.

A small per-frame image network (an encoder-decoder with skips) that reads each frame and the
audio around it and adds a residual where the mouth should differ: out = frame + residual.
(A gated paint-over, frame * (1 - alpha) + paint * alpha, was tried first and learnt the
identity: alpha fell to zero everywhere within 50 steps, because the paint started as noise,
and with alpha at zero the paint gets no gradient.) It is trained (`flowact train --stage lips`) on the
synthetic world with the mouth *closed* in its input: the world redraws every training frame
with the mouth at rest, and the target is the frame as drawn. So nothing in the input says how
open the mouth is; the audio must. (A network that also sees the mouth as drawn learns to copy
it and leaves the audio unused: the audio-conditioned decoders measured in docs/experiments.md.)

The audio is the chunk's log-mel windows, the same ones the transformer's audio encoder reads
(each latent frame's own 160 ms with 80 ms of context and 80 ms of look-ahead). The refiner's
own small ear reads them at the mel's 10 ms resolution. (Reading the transformer's audio
tokens instead, pooled over 80 ms and trained for a transformer that ignores them, the ear's
predicted openness correlated 0.23 with the world's on held-out voices.) From it a head
predicts the frame's mouth parameters (the world's visemes: open, width, round, closed,
teeth), and the image network draws from those five numbers only.
Training supervises the parameters directly and feeds the image network the world's own
parameters half of the time, so the two halves learn apart: hearing a mouth shape, drawing it.
(Trained end to end from frames alone, the refiner did not get off the identity in 100 steps.)

Where it may draw: the residual is scaled by a map of where the mouth is, which a small head reads
from the frame's own features at 1/8 size (not from the audio). Without it the refiner painted
mouth-like patches wherever the frame looked like lips: on striped shirts, and a little on the
eyes, glasses and hands (docs/experiments.md, "the lip refiner's spill"). The head learns from the world's
mouth position (`flowact train --stage lips --only lips.gate.`), whether the mouth is open or not.
Weights that predate it load with the map off (`gate_on` 0): the refiner draws as before.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import LipsConfig
from .audio import VISEMES, Ear
from .upconv import up2_conv


class _Conv(nn.Sequential):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__(nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(min(8, cout // 4), cout), nn.SiLU())


class LipRefiner(nn.Module, Ear):
    def __init__(self, cfg: LipsConfig, mel_bins: int, context: int, per_latent: int, temporal: int):
        """context: mel frames before a latent frame's own in its window; per_latent: mel frames
        per latent frame; temporal: video frames per latent frame (AudioEncoder's geometry)."""
        super().__init__()
        self.cfg, self.temporal = cfg, temporal
        self.context, self.per_frame = context, per_latent // temporal
        w, e = cfg.width, cfg.ear_width
        # the ear: 1-D convs over the latent frame's mel window, then one feature per video frame
        self._init_ear(mel_bins, e, temporal)
        self.cond = nn.Sequential(nn.Linear(VISEMES, 2 * w), nn.SiLU(), nn.Linear(2 * w, 2 * w))
        # calibration of the ear (flowact.train.calibrate): a regression to the world's mouth
        # parameters predicts their mean well and their swings muted; scale and shift per
        # parameter give the predictions the world's mean and spread. Identity until calibrated.
        self.register_buffer("cal_scale", torch.ones(VISEMES))
        self.register_buffer("cal_shift", torch.zeros(VISEMES))
        self.enc1 = _Conv(3, w, 2)  # /2
        self.enc2 = _Conv(w, 2 * w, 2)  # /4
        self.enc3 = _Conv(2 * w, 4 * w, 2)  # /8
        self.mid1 = _Conv(4 * w + 2 * w, 4 * w)
        self.mid2 = _Conv(4 * w, 4 * w)
        self.film = nn.Linear(2 * w, 8 * w)  # the mouth parameters also scale/shift the bottleneck
        self.dec3 = _Conv(4 * w + 2 * w, 2 * w)  # /4, with enc2's skip
        self.dec2 = _Conv(2 * w + w, w)  # /2, with enc1's skip
        self.dec1 = _Conv(w + 3, w)  # /1, with the frame
        self.head = nn.Conv2d(w, 3, 3, 1, 1)  # the RGB residual
        # where the mouth is, at 1/8 size, from the frame's features alone (logits)
        self.gate = nn.Sequential(nn.Conv2d(4 * w, w, 3, 1, 1), nn.SiLU(), nn.Conv2d(w, 1, 3, 1, 1))
        self.register_buffer("gate_on", torch.zeros(()))  # 1 once the gate is trained (the lips stage sets it)
        with torch.no_grad():  # starts near the identity; every output pixel gets its own gradient
            self.head.weight.mul_(0.1)
            self.head.bias.zero_()

    @staticmethod
    def _up(step: _Conv, h: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        conv, norm, act = step
        return act(norm(up2_conv(h, conv, skip)))

    def visemes(self, windows: torch.Tensor, frames: int) -> torch.Tensor:
        """windows (b, latents, window, mel_bins): each latent frame's mel window (as the audio
        encoder takes it) -> (b * frames, 5): each video frame's mouth parameters, uncalibrated;
        frames = latents * temporal. A video frame pools the ear's features over its own 40 ms
        and the 40 ms after (lips move ahead of the sound)."""
        b, n, win, bins = windows.shape
        if frames != n * self.temporal:
            raise ValueError(f"{frames} frames for {n} latent frames' mel windows (want {n * self.temporal})")
        _, out = self.hear(windows, self.context, self.per_frame, self.temporal)
        return torch.sigmoid(out.reshape(b * frames, VISEMES))

    def mouth_map(self, logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Gate logits (n, 1, h, w) at 1/8 size -> (n, 1, H, W) in [0, 1]: where the residual counts.
        Widened by one cell first (a 3x3 max): a small face's mouth spans one or two cells, and the
        bilinear blend with its closed neighbours would mute the mouth's own pixels."""
        logits = F.max_pool2d(logits, 3, 1, 1)
        return torch.sigmoid(F.interpolate(logits, size=size, mode="bilinear", align_corners=False))

    def forward(
        self,
        frames: torch.Tensor,
        windows: torch.Tensor,
        visemes: torch.Tensor | None = None,
        gate_logits: bool = False,
    ):
        """frames (b, 3, T, H, W) in [-1, 1], T = latents * temporal; windows (b, latents, window,
        mel_bins). Returns refined frames, same shape. `visemes` (b * T, 5) replaces the
        predicted mouth parameters (training). `gate_logits`: also return the mouth map's logits
        (b * T, 1, H/8, W/8) (training)."""
        b, _, T, H, W = frames.shape
        x = frames.permute(0, 2, 1, 3, 4).reshape(b * T, 3, H, W).to(self.head.weight.dtype)
        x = x.contiguous(memory_format=torch.channels_last)  # the CPU's 2-D convs run faster in it
        if visemes is None:
            v = (self.visemes(windows, T) * self.cal_scale.to(x.dtype) + self.cal_shift.to(x.dtype)).clamp(0, 1)
        else:
            v = visemes
        a = self.cond(v.to(x.dtype))  # (b*T, 2w)
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        h = self.mid1(torch.cat([e3, a[:, :, None, None].expand(-1, -1, *e3.shape[2:])], 1))
        scale, shift = self.film(a).chunk(2, dim=-1)
        h = self.mid2(h * (1 + scale[:, :, None, None]) + shift[:, :, None, None])
        # each decoder step: nearest x2 of h beside the skip, then conv, norm, SiLU (upconv.py)
        h = self._up(self.dec3, h, e2)
        h = self._up(self.dec2, h, e1)
        h = self._up(self.dec1, h, x)
        logits = self.gate(e3)
        # the flag picks the map or 1 without being read on the host (no device sync per chunk);
        # off, the residual is multiplied by exactly 1
        keep = torch.where(self.gate_on > 0, self.mouth_map(logits, (H, W)), 1.0)
        y = (x + self.head(h) * keep.to(x.dtype)).reshape(b, T, 3, H, W).permute(0, 2, 1, 3, 4).to(frames.dtype)
        return (y, logits) if gate_logits else y
