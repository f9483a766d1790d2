"""The causal VAE's objectives: `vae` (reconstruction: L1 + image-gradient L1, the mouth and
moving parts weighted, plus a small KL, on [reference | 4n frames]) and `decoder` (the same
with the encoder frozen: sharpens decoding while keeping the latent space that a latent cache
and the transformer were built on).

A decoder that reads motion (VAEConfig.motion) is told each frame's motion, the world's labels
(the reference frame: its own pose, zeros). With `closed_input` a share of the samples is encoded
from the frames drawn with the mouth at rest, the target staying the frames as drawn: their latents
hold no open mouth, so the motion is the only place the decoder can learn it from. (Decoders told
the audio learnt to ignore it while the latents' blurred mouth was there to copy: docs/experiments.md.)"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import FlowactError
from ..model import FlowActModel
from .objective import Objective, motion_weights, mouth_weights, to_video, wmean


def clip_motion(samples, dim: int, device) -> torch.Tensor | None:
    """(b, 1 + frames, dim): the samples' motion for a decoder that reads `dim` numbers, the reference
    frame's (its own pose) zeros; None for a decoder that reads none."""
    if not dim:
        return None
    if any(s.motion is None for s in samples):
        raise FlowactError("a decoder that reads motion trains on the world's motion labels: use --data synth")
    m = torch.from_numpy(np.stack([s.motion[:, :dim] for s in samples])).float()
    return torch.cat([torch.zeros_like(m[:, :1]), m], dim=1).to(device)


class VAEObjective(Objective):
    name = "vae"
    frozen_encoder = False

    @staticmethod
    def trainable(model: FlowActModel) -> list[torch.nn.Parameter]:
        return list(model.vae.parameters())

    def frames_needed(self, step_rng: np.random.Generator) -> int:
        return 2 * self.preset.vae.temporal * self.preset.stream.chunk_latents

    def loss(self, samples, g):
        if any(s.frames is None for s in samples):
            raise FlowactError(
                f"the {self.name} stage needs video frames, not a latent cache: use --data synth or a clip folder"
            )
        vae = self.model.vae
        dev = next(vae.parameters()).device
        x = to_video(samples, dev)
        x_in = x
        if self.s.closed_input > 0:
            if any(s.closed is None for s in samples):
                raise FlowactError("--closed-input needs the frames drawn with the mouth at rest: use --data synth")
            pick = self.ranks.rand((len(samples),), g, dev) < self.s.closed_input
            closed = to_video([replace(s, frames=s.closed) for s in samples], dev)
            x_in = torch.where(pick[:, None, None, None, None], closed, x)
        with torch.set_grad_enabled(not self.frozen_encoder and torch.is_grad_enabled()):
            mean, logvar = vae.encoder(x_in)
        z = mean + self.ranks.randn(mean.shape, g, mean.device) * (0.5 * logvar).exp() * self.s.posterior_noise
        rec = vae.decoder(z, reference=x[:, :, 0], motion=clip_motion(samples, vae.cfg.motion, dev))
        w = motion_weights(x, self.s.motion_weight)
        if self.s.mouth_weight > 0:
            w = w + self.s.mouth_weight * mouth_weights(samples, x)
        l1 = wmean((rec - x).abs(), w, self.ranks)
        grad = wmean((rec.diff(dim=-1) - x.diff(dim=-1)).abs(), w[..., 1:], self.ranks) + wmean(
            (rec.diff(dim=-2) - x.diff(dim=-2)).abs(), w[..., 1:, :], self.ranks
        )
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()
        loss = l1 + grad + self.s.kl_weight * kl
        mse = F.mse_loss(rec.detach().clamp(-1, 1), x)
        psnr = float(10 * torch.log10(4.0 / mse.clamp_min(1e-10)))
        return loss, {"l1": float(l1.detach()), "kl": float(kl.detach()), "psnr": psnr}


class DecoderObjective(VAEObjective):
    name = "decoder"
    frozen_encoder = True

    @staticmethod
    def trainable(model: FlowActModel) -> list[torch.nn.Parameter]:
        return list(model.vae.decoder.parameters())  # the encoder (so the latent space) stays frozen
