"""The evaluator networks: a frame reader and an audio-to-mouth reader.

`FrameJudge` reads any 128x128 frame: a small CNN gives a feature per frame, from which
a linear head reads the head pose, gaze, blink and arm joints, and where the mouth is; the
mouth itself (open, width, round, closed, teeth) is read by a second small CNN from a crop
around that place (version 2: read from the whole frame, the mouth's few pixels lost to the
head and body, which move with the speech); a separate small
branch gives a normalised appearance embedding (identity). The state head (dilated 1-D convolutions, ~0.8 s
receptive field) reads the behaviour state from the sequence of those readings, because
waving, nodding and speaking are motions, not poses: a frozen video cannot look like them.
It is trained in a second stage on the frozen readings (`judge.train`); `proj`/`temporal`
are the auxiliary state head of the first stage, kept so that stage is reproducible.

`AudioMouth` reads log-mel frames (100 per second) and predicts the mouth openness the
speech implies, so lip-sync can be judged from any wav.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..world.behaviour import STATES

INPUT = 128
# regression targets, in this order (joints in label coordinates mapped to [-1, 1])
REG_KEYS = ("open", "width", "round", "closed", "teeth", "yaw", "pitch", "roll", "gaze_x", "gaze_y", "blink") + tuple(
    f"{j}_{a}" for j in ("ls", "le", "lw", "rs", "re", "rw") for a in "xy"
)
AUX_PREFIXES = ("proj.", "temporal.")  # training-only modules, left out of saved weights
# what a judge weights file says it holds (weights.py): the two networks, whose shapes live in this file
ARCHITECTURE = {"vision": "FrameJudge", "audio": "AudioMouth"}
MOUTH_KEYS = 5  # the first readings: open, width, round, closed, teeth
MOUTH_CROP = 32  # the mouth reader's input, pixels a side
MOUTH_SPAN = 1.7  # the crop's half side, in the character's resting mouth half-widths
EMBED = 64
FEATURE = 256
AUDIO_RATE = 16_000
MEL_HOP = 160  # 100 mel frames per second, 4 per video frame at 25 fps
MEL_WIN = 400
MEL_BANDS = 40


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _state_convs(cin: int) -> nn.Sequential:
    """Per-frame features (b, cin, frames) -> state logits: dilated 1-D convs over ~1.5 s."""
    return nn.Sequential(
        nn.Conv1d(cin, 96, 5, padding=2),
        nn.GELU(),
        nn.Conv1d(96, 96, 5, padding=4, dilation=2),
        nn.GELU(),
        nn.Conv1d(96, 96, 3, padding=4, dilation=4),
        nn.GELU(),
        nn.Conv1d(96, len(STATES), 1),
    )


class FrameJudge(nn.Module):
    def __init__(self):
        super().__init__()
        self.cnn = nn.Sequential(
            _block(3, 24, 2),  # 64
            _block(24, 48, 2),
            _block(48, 48, 1),  # 32
            _block(48, 80, 2),
            _block(80, 80, 1),  # 16
            _block(80, 128, 2),
            _block(128, 128, 1),  # 8
            _block(128, 160, 2),  # 4
            nn.Conv2d(160, 48, 1),
        )
        # LayerNorm + GELU: a ReLU here died wholesale in training (frame-invariant features)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(48 * 16, FEATURE), nn.LayerNorm(FEATURE), nn.GELU())
        self.reg = nn.Linear(FEATURE, len(REG_KEYS))
        # Identity has its own small branch: an embedding trained to ignore pose and mouth
        # would otherwise teach the shared features to ignore exactly what `reg` must read.
        self.identity = nn.Sequential(
            nn.AvgPool2d(2),  # 64x64 is plenty for colours and styles
            _block(3, 24, 2),
            _block(24, 48, 2),
            _block(48, 96, 2),
            _block(96, 128, 2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(128, EMBED),
        )
        # where the mouth is: centre x, y and its resting half-width, in the input's [0, 1] units
        self.where = nn.Linear(FEATURE, 3)
        self.mouth = nn.Sequential(  # small: the shipped weights' 40 MB budget
            _block(3, 24, 1),
            _block(24, 32, 2),  # 16
            _block(32, 48, 2),  # 8
            _block(48, 64, 1),
            _block(64, 64, 2),  # 4
            nn.Flatten(),
            nn.Linear(64 * 16, MOUTH_KEYS),
        )
        # stage one's auxiliary state head (AUX_PREFIXES): trained, not shipped
        self.proj = nn.Linear(FEATURE, 72)
        self.temporal = _state_convs(72 + len(REG_KEYS))
        self.state_head = _state_convs(len(REG_KEYS))

    def features(self, frames: torch.Tensor) -> torch.Tensor:
        """frames: (n, 3, 128, 128) float in [0, 1] -> (n, FEATURE)."""
        return self.fc(self.cnn(frames - 0.5))

    def read(self, feats: torch.Tensor) -> torch.Tensor:
        """The whole frame's readings (n, len(REG_KEYS)) in REG_KEYS order (its mouth columns are
        an auxiliary target; `readings` takes the mouth from the crop)."""
        return self.reg(feats)

    def locate(self, feats: torch.Tensor) -> torch.Tensor:
        """(n, 3): the mouth's centre x, y and resting half-width in the input's [0, 1] units."""
        return self.where(feats)

    def crop(self, frames: torch.Tensor, place: torch.Tensor) -> torch.Tensor:
        """frames (n, 3, 128, 128) in [0, 1], place (n, 3) as `locate` -> (n, 3, MOUTH_CROP, MOUTH_CROP)."""
        half = place[:, 2].clamp(0.01, 0.2) * MOUTH_SPAN
        theta = torch.zeros(len(frames), 2, 3, dtype=frames.dtype, device=frames.device)
        theta[:, 0, 0] = theta[:, 1, 1] = 2 * half
        theta[:, 0, 2], theta[:, 1, 2] = 2 * place[:, 0] - 1, 2 * place[:, 1] - 1
        grid = F.affine_grid(theta, [len(frames), 3, MOUTH_CROP, MOUTH_CROP], align_corners=False)
        return F.grid_sample(frames - 0.5, grid, align_corners=False, padding_mode="border")

    def read_mouth(self, frames: torch.Tensor, place: torch.Tensor) -> torch.Tensor:
        """(n, MOUTH_KEYS) read from the crop at `place`."""
        return self.mouth(self.crop(frames, place))

    def readings(self, frames: torch.Tensor, feats: torch.Tensor | None = None) -> torch.Tensor:
        """Per-frame readings (n, len(REG_KEYS)): the mouth from its crop at the located place,
        the rest from the whole frame. frames (n, 3, 128, 128) in [0, 1]."""
        feats = self.features(frames) if feats is None else feats
        mouth = self.read_mouth(frames, self.locate(feats))
        return torch.cat([mouth, self.reg(feats)[:, MOUTH_KEYS:]], 1)

    def embed(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (n, 3, 128, 128) in [0, 1] -> unit appearance embedding (n, EMBED)."""
        return F.normalize(self.identity(frames - 0.5), dim=-1)

    def states(self, reg: torch.Tensor) -> torch.Tensor:
        """reg (batch, frames, len(REG_KEYS)), as `readings` -> state logits (batch, frames, len(STATES)).

        Read from the per-frame readings (mouth, pose, gaze, joints): a wave is a raised
        wrist going back and forth, a nod a pitch oscillation, speech a moving mouth.
        """
        return self.state_head(reg.transpose(1, 2)).transpose(1, 2)

    def aux_states(self, feats: torch.Tensor) -> torch.Tensor:
        """The first training stage's state head (features and readings together)."""
        x = torch.cat([self.proj(feats), self.reg(feats)], -1).transpose(1, 2)
        return self.temporal(x).transpose(1, 2)


def mel_filters(rate: int = AUDIO_RATE, n_fft: int = 512, bands: int = MEL_BANDS) -> np.ndarray:
    """Triangular mel filterbank (bands, n_fft // 2 + 1)."""
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    inv = lambda m: 700 * (10 ** (m / 2595) - 1)  # noqa: E731
    edges = inv(np.linspace(mel(60), mel(7600), bands + 2))
    freqs = np.linspace(0, rate / 2, n_fft // 2 + 1)
    fb = np.zeros((bands, len(freqs)))
    for b in range(bands):
        lo, mid, hi = edges[b : b + 3]
        fb[b] = np.clip(np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)), 0, None)
    return fb.astype(np.float32)


_MEL = torch.from_numpy(mel_filters())


def log_mel(samples: torch.Tensor) -> torch.Tensor:
    """(samples,) 16 kHz -> (MEL_BANDS, frames) with frame j covering samples [160 j, 160 j + 400)."""
    x = F.pad(samples, (0, MEL_WIN))
    spec = (
        torch.stft(
            x,
            512,
            hop_length=MEL_HOP,
            win_length=MEL_WIN,
            window=torch.hann_window(MEL_WIN),
            center=False,
            return_complex=True,
        ).abs()
        ** 2
    )
    n = math.ceil(len(samples) / MEL_HOP)
    return torch.log(_MEL @ spec[:, :n] + 1e-6)


class AudioMouth(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = nn.BatchNorm1d(MEL_BANDS)
        self.net = nn.Sequential(
            nn.Conv1d(MEL_BANDS, 64, 5, padding=2),
            nn.GELU(),
            nn.Conv1d(64, 64, 5, padding=4, dilation=2),
            nn.GELU(),
            nn.Conv1d(64, 64, 5, padding=8, dilation=4),
            nn.GELU(),
            nn.Conv1d(64, 1, 1),
        )

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """mel (batch, MEL_BANDS, frames) -> openness (batch, frames) at 100 per second."""
        return self.net(self.norm(mel)).squeeze(1)
