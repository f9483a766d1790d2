"""What every toon objective shares: the settings, its batches (clips drawn from a source), the
conditioning built from a batch (mel windows, audio and text tokens, VAE latents), and the loss
weights. Each objective is a small class over `Objective` in its own module (autoencoder.py,
diffusion.py, lipsync.py); stages.py names them, and loop.py trains them.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import weights as W
from ..config import Preset
from ..errors import FlowactError
from ..model import FlowActModel
from ..model.layout import TokenLayout
from .distributed import Ranks
from .sample import Sample


@dataclass(frozen=True)
class StageSettings:
    p_clean_context: float = 0.3  # pretrain: a context chunk is clean with this probability
    p_drop_audio: float = 0.1
    p_drop_text: float = 0.1
    kl_weight: float = 1e-4
    # vae/decoder: the scale of the posterior sample's noise (1: z = mean + std * eps, the VAE as
    # trained; 0: the mean itself, so the decoder is asked to draw what the mean alone says)
    posterior_noise: float = 1.0
    motion_weight: float = 0.0  # vae/decoder: extra reconstruction weight on pixels that differ from the reference
    mouth_weight: float = 0.0  # extra loss weight on the open mouth (synthetic world's masks): pixels for
    # vae/decoder, latent cells for pretrain/selfforce/distill
    # distill: teacher Euler steps per chunk, split evenly over the student's steps (16 -> 15 on 3 steps, 8 -> 6)
    teacher_steps: int = 16
    guidance: float = 2.0  # distill: teacher classifier-free guidance on audio + text
    # distill: what the guided teacher's unconditional pass drops: "audio+text", or "audio" (the prompt
    # is kept in both passes, so guidance amplifies only what the speech changes)
    guide_on: str = "audio+text"
    # distill: the teacher guides only at noise levels t <= this (a guidance interval: at high noise
    # guidance also amplifies where the head is, which the frames show as a double image)
    guide_below: float = 1.0
    # distill: the student's bank holds the student's own rollout of the context chunks (self-forcing, the
    # inference path), and the teacher's bank the same latents; off: both hold the clip's latents (teacher forcing)
    self_context: bool = False
    lips_leak: float = 0.3  # lips: the input's mouth is the closed one plus up to this share of the real one
    # pretrain (audio.frame_tokens): the audio encoder keeps predicting the world's mouth parameters,
    # this weight on their squared error beside the flow-matching loss (a latent cache built with --labels)
    viseme_weight: float = 0.0
    # this fraction of the samples hears its audio through another microphone: a room, band limits,
    # noise, a telephone codec, loudness from -30 to +8 dB (train/motion_data.py `augment`), so human
    # recordings sound familiar
    augment: float = 0.0
    # pretrain/memory: weight of an L1 loss on the mouth's pixels, decoded through the frozen VAE decoder
    # from the transformer's predicted clean latents (x0 = xt - t v): the encoder's latents blur the
    # mouth, so the flow-matching target alone cannot ask the decoder for a shaped one (needs pixels:
    # a latent cache built with --frames and --labels, or --data synth)
    pixel_weight: float = 0.0
    # vae/decoder with a decoder that reads motion (VAEConfig.motion): this share of the samples is encoded
    # from its frames drawn with the mouth at rest (the target stays the frames as drawn), so the decoder
    # must draw the mouth from the motion it is told, not copy it from the latents (synthetic world only)
    closed_input: float = 0.0


class Objective:
    """One training stage's loss over a batch of clips, as loop.py's `Objective` asks. Subclasses
    set `name`, say which parameters train (`trainable`) and how many frames a sample needs, and
    define `loss`. Clips come from `source` (data.py make_source): sample i of step s is a pure
    function of (seed, s, i), so a resumed run sees the batches an uninterrupted one would.

    Under data parallelism (distributed.py) the batch is this rank's share of the global one:
    a loss draws its noise with `ranks.randn`/`rand`/`per_sample` (the global batch's draws, this
    rank's rows) and divides a weighted sum by `ranks.mean` of its weights, so that the mean of
    the ranks' losses is the loss of the global batch."""

    name = ""
    copies_teacher = False  # without a teacher given, a frozen copy of the student is one (distill)

    def __init__(
        self,
        model: FlowActModel,
        preset: Preset,
        settings: StageSettings = StageSettings(),
        teacher: FlowActModel | None = None,
        ranks: Ranks = Ranks(),
        source=None,
        seed: int = 0,
    ):
        self.model, self.preset, self.s, self.ranks = model, preset, settings, ranks
        if teacher is None and self.copies_teacher:  # the student starts as the teacher
            teacher = copy.deepcopy(model).eval().requires_grad_(False)
        self.teacher = teacher
        self.layout = TokenLayout.of(preset)
        self.source, self.seed = source, seed

    @staticmethod
    def trainable(model: FlowActModel) -> list[torch.nn.Parameter]:
        """The transformer's stages train the MMDiT and its audio and text encoders."""
        return [p for m in (model.dit, model.audio, model.text) for p in m.parameters()]

    def parameters(self) -> list[torch.nn.Parameter]:
        return self.trainable(self.model)

    def frames_needed(self, step_rng: np.random.Generator) -> int:
        raise NotImplementedError

    def batch(self, step: int, rows: range) -> list[Sample]:
        """The clips of the global batch's `rows` at `step` (of the same length), audio heard
        elsewhere for a share of them (`settings.augment`)."""
        frames = self.frames_needed(np.random.default_rng([self.seed, step, 0xB]))
        samples = [self.source.sample(step, i, frames) for i in rows]
        if self.s.augment:
            samples = [heard_elsewhere(s, self.s.augment, (self.seed, step, i)) for s, i in zip(samples, rows)]
        return samples

    def loss(self, samples: list[Sample], g: torch.Generator) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def save(self, path: Path) -> None:
        W.save(self.model, path)

    # -- shared conditioning ---------------------------------------------------------------
    def audio_windows(self, samples: list[Sample], latents: int) -> torch.Tensor:
        """(b, latents, window, bins): each latent frame's log-mel window, as the audio encoder
        reads it, with the real sound around the window where the sample has an audio margin."""
        enc = self.model.audio
        dev = next(enc.parameters()).device
        T = self.preset.vae.temporal
        if any(s.audio_margin % T for s in samples):
            raise FlowactError(f"a sample's audio margin must be a multiple of {T} frames")
        return torch.stack(
            [enc.windows(enc.mel(torch.from_numpy(s.audio).to(dev)), s.audio_margin // T, latents) for s in samples]
        )

    def audio_tokens(self, samples: list[Sample], latents: int) -> torch.Tensor:
        return self.model.audio(self.audio_windows(samples, latents))

    def text_tokens(self, samples: list[Sample], chunks: int) -> torch.Tensor:
        per = self.preset.frames_per_chunk
        prompts = [s.prompts[j * per] for s in samples for j in range(chunks)]
        tok = self.model.text(prompts)
        return tok.view(len(samples), chunks, *tok.shape[1:])

    def motion(self, samples: list[Sample]) -> torch.Tensor | None:
        """(b, frames, model.motion_inject): the world's motion of every frame (`video_motion`), for a
        model that reads it; None for one that does not."""
        if not self.preset.model.motion_inject:
            return None
        if any(s.motion is None for s in samples):
            raise FlowactError(
                "this preset's video model reads the world's motion: a latent cache built with --labels "
                "(since 2026-12-06)"
            )
        dev = next(self.model.dit.parameters()).device
        return torch.from_numpy(np.stack([s.motion for s in samples])).to(dev)

    @torch.no_grad()
    def latents(self, samples) -> torch.Tensor:
        dev = next(self.model.vae.parameters()).device
        if all(s.latents is not None for s in samples):  # a latent cache: the VAE already ran
            return torch.from_numpy(np.stack([s.latents for s in samples])).to(dev)
        x = to_video(samples, dev)
        return self.model.vae.encode(x)


# clean latent frames decoded before a predicted chunk, so the causal decoder has its past
PIXEL_WARMUP = 2


def decoded_mouth_l1(
    model: FlowActModel, samples: list[Sample], z: torch.Tensor, x0_hat: torch.Tensor, first: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """L1 on the mouth region's pixels of a predicted chunk, decoded through the (frozen) VAE decoder.

    z (b, c, 1 + n, h, w): the window's clean latents, the reference first; x0_hat (b, c, C, h, w):
    the prediction for latent frames [first, first + C) of the window. The decoder sees the reference
    latent, up to PIXEL_WARMUP clean latents before the chunk, then the prediction, as a stream would
    decode them. The region is every latent cell where the mouth opens anywhere in the window (dilated
    by a cell), closed frames included, so shutting the mouth is learnt as well as opening it.
    Returns (per-sample L1 (b,), per-sample mask of windows that have a mouth region (b,))."""
    if any(s.frames is None for s in samples):
        raise FlowactError(
            "--pixel-weight needs the clips' pixels: a latent cache built with --frames --labels, or --data synth"
        )
    vae = model.vae
    T = vae.cfg.temporal
    C = x0_hat.shape[2]
    w0 = max(0, first - PIXEL_WARMUP)
    zin = torch.cat([z[:, :, :1], z[:, :, 1 + w0 : 1 + first], x0_hat], dim=2)
    x = to_video(samples, x0_hat.device)  # (b, 3, 1 + frames, H, W): the reference first
    video = vae.decode(zin, reference=x[:, :, 0])[:, :, -T * C :].float()  # (b, 3, T*C, H, W)
    target = x[:, :, 1 + first * T : 1 + (first + C) * T]
    region = latent_mouth(samples, z[:, :, 1:]).float().amax(dim=2)  # (b, 1, h, w)
    region = F.interpolate(region, size=target.shape[-2:], mode="nearest")[:, :, None]  # (b, 1, 1, H, W)
    err = (video - target).abs().mean(dim=1, keepdim=True) * region
    count = region.sum(dim=(1, 2, 3, 4)) * target.shape[2]
    return err.sum(dim=(1, 2, 3, 4)) / count.clamp_min(1), (count > 0).float()


def to_video(samples: list[Sample], device) -> torch.Tensor:
    """(batch, 3, 1 + frames, H, W) in [-1, 1]: the reference first (the VAE's first frame alone)."""
    vids = [np.concatenate([s.reference[None], s.frames]) for s in samples]
    x = torch.from_numpy(np.stack(vids)).to(device).float() / 127.5 - 1
    return x.permute(0, 4, 1, 2, 3)


def shifted(u: torch.Tensor, shift: float) -> torch.Tensor:
    return shift * u / (1 + (shift - 1) * u)


def motion_weights(x: torch.Tensor, strength: float) -> torch.Tensor:
    """Per-pixel reconstruction weights (b, 1, T, H, W) for a video (b, 3, T, H, W) whose
    frame 0 is the reference: 1 + strength * m, where m in [0, 1] marks pixels (dilated by
    3 px) that differ from the reference: the mouth, eyes, hands, a turned head. A plain L1
    spends the small VAE's capacity on the large static areas, and the parts that move
    (the ones lip-sync and behaviour are read from) come out as blur. Needs no labels, so it
    works on real video as well."""
    b, _, T, H, W = x.shape
    if strength <= 0:
        return torch.ones(b, 1, T, H, W, device=x.device, dtype=x.dtype)
    with torch.no_grad():
        diff = (x - x[:, :, :1]).abs().mean(dim=1, keepdim=True)  # 0 on the reference frame itself
        m = (diff * 8).clamp(max=1.0)  # a change of 1/8 of the range (in [-1, 1] units) counts fully
        m = F.max_pool3d(m, kernel_size=(1, 7, 7), stride=1, padding=(0, 3, 3))
        return 1 + strength * m


def mouth_weights(samples: list[Sample], x: torch.Tensor) -> torch.Tensor:
    """(b, 1, T, H, W) in [0, 1]: the samples' mouth masks dilated by 2 px, 0 on the reference
    frame (x's frame 0). The open mouth is a few dozen pixels of a 128x128 frame: without its
    own weight a plain L1 barely notices whether the mouth opens at all."""
    if any(s.mouth is None for s in samples):
        raise FlowactError("--mouth-weight needs mouth masks, which only the synthetic world has: use --data synth")
    m = torch.from_numpy(np.stack([s.mouth for s in samples])).to(x.device, x.dtype)[:, None]  # (b, 1, T-1, H, W)
    m = F.max_pool3d(m, kernel_size=(1, 5, 5), stride=1, padding=(0, 2, 2))
    return torch.cat([torch.zeros_like(m[:, :, :1]), m], dim=2)


def latent_mouth(samples: list[Sample], x0: torch.Tensor) -> torch.Tensor:
    """(b, 1, n, h, w) in [0, 1]: the samples' mouth masks on the latent grid of x0 (b, c, n, h,
    w), the clip's latents without the reference frame: latent frame k covers video frames
    [k*T, (k+1)*T). A cell counts when any of its pixels shows the open mouth in any of its
    frames; dilated by one cell, since the head moves and the VAE's receptive field is wider
    than a cell. Without its own weight the mouth is about 2% of the flow-matching loss."""
    b, _, n, h, w = x0.shape
    if all(s.latent_mouth is not None for s in samples):  # a latent cache built with labels: already on the grid
        return torch.from_numpy(np.stack([s.latent_mouth for s in samples])).to(x0.device, x0.dtype)[:, None]
    if any(s.mouth is None for s in samples):
        raise FlowactError(
            "--mouth-weight needs mouth masks, which only the synthetic world has: use --data synth "
            "or a latent cache built with --labels"
        )
    m = torch.from_numpy(np.stack([s.mouth for s in samples])).to(x0.device, torch.float32)  # (b, F, H, W)
    return mouth_grid(m, n, (h, w))[:, None].to(x0.dtype)


def mouth_grid(m: torch.Tensor, n: int, hw: tuple[int, int]) -> torch.Tensor:
    """Pixel mouth masks (b, frames, H, W) -> (b, n, h, w) on the latent grid: latent frame k
    covers frames [k*T, (k+1)*T); a cell counts when any of its pixels shows the open mouth in
    any of its frames, dilated by one cell."""
    b = m.shape[0]
    T = m.shape[1] // n
    m = m[:, : n * T].reshape(b, n, T, *m.shape[2:]).amax(dim=2)  # (b, n, H, W)
    m = F.adaptive_max_pool2d(m, hw)
    return F.max_pool2d(m, 3, stride=1, padding=1)


def world_visemes(samples: list[Sample], device) -> torch.Tensor:
    """(b * frames, 5): the samples' mouth parameters as the world drew them, frame-major per sample."""
    v = torch.from_numpy(np.stack([s.visemes for s in samples])).to(device)
    return v.reshape(-1, v.shape[-1])


def wmean(err: torch.Tensor, w: torch.Tensor, ranks: Ranks = Ranks()) -> torch.Tensor:
    """Weighted mean of err (b, c, ...) with weights w (b, 1, ...), normalised so that uniform weights give .mean().
    Over ranks, the weights' sum is the mean over ranks of theirs: the ranks' results average to the global mean."""
    return (err * w).sum() / (ranks.mean(w.sum()) * err.shape[1])


def no_prompts(s: Sample) -> Sample:
    return dataclasses.replace(s, prompts=[""] * len(s.prompts))


def heard_elsewhere(sample: Sample, share: float, key: tuple[int, int, int]) -> Sample:
    """The sample, its audio augmented (room, band limits, noise, telephone codec, loudness) with probability `share`;
    drawn from (seed, step, index in batch), so a resumed run augments alike."""
    from .motion_data import augment

    rng = np.random.default_rng([*key, 0xA6])
    if rng.random() >= share:
        return sample
    return dataclasses.replace(sample, audio=augment(sample.audio, rng))
