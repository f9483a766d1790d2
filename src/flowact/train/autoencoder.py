"""The causal VAE's objectives: `vae` (reconstruction: L1 + image-gradient L1, the mouth and
moving parts weighted, plus a small KL, on [reference | 4n frames]) and `decoder` (the same
with the encoder frozen: sharpens decoding while keeping the latent space that a latent cache
and the transformer were built on)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import FlowactError
from ..model import FlowActModel
from .objective import Objective, motion_weights, mouth_weights, to_video, wmean


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
        x = to_video(samples, next(vae.parameters()).device)
        with torch.set_grad_enabled(not self.frozen_encoder and torch.is_grad_enabled()):
            mean, logvar = vae.encoder(x)
        z = mean + self.ranks.randn(mean.shape, g, mean.device) * (0.5 * logvar).exp() * self.s.posterior_noise
        rec = vae.decoder(z, reference=x[:, :, 0])
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
