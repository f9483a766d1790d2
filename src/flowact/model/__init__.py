"""The networks, pure modules. `FlowActModel` bundles them for one preset."""

from __future__ import annotations

import torch
import torch.nn as nn

from ..config import Preset
from .audio import AudioEncoder
from .mmdit import MMDiT
from .lips import LipRefiner
from .text import TextEncoder
from .vae import VideoVAE


class FlowActModel(nn.Module):
    """Everything one preset needs: the MMDiT, the causal VAE, the audio and text encoders, and
    (preset `lips`) the lip refiner. Its state dict (prefixes dit., vae., audio., text., lips.)
    is one safetensors file."""

    def __init__(self, preset: Preset):
        super().__init__()
        self.preset = preset
        self.dit = MMDiT(
            preset.model,
            preset.vae.latent_channels,
            preset.audio.width,
            preset.text.width,
            preset.audio.tokens_per_latent,
            grid_tokens=(preset.latent_hw[0] // preset.model.patch) * (preset.latent_hw[1] // preset.model.patch),
            frames_per_latent=preset.vae.temporal,
        )
        self.vae = VideoVAE(preset.vae)
        self.audio = AudioEncoder(preset.audio, preset.vae.temporal)
        self.text = TextEncoder(preset.text)
        self.lips = (
            LipRefiner(
                preset.lips, preset.audio.mel_bins, self.audio.context, self.audio.per_latent, preset.vae.temporal
            )
            if preset.lips is not None
            else None
        )

    def init_random(self, seed: int) -> None:
        """Seeded random weights, drawn on the parameters' own device."""
        g = torch.Generator(device=next(self.parameters()).device).manual_seed(seed)
        with torch.no_grad():
            for module in (self.vae, self.audio, self.text) + ((self.lips,) if self.lips is not None else ()):
                for name, prm in module.named_parameters():
                    if (module is self.lips and name.startswith("gate.")) or name.startswith("decoder.mouth."):
                        continue  # off (gate_on, mouth_on 0) until trained; drawing them would shift every draw after
                    if prm.dim() > 1:  # matrices and conv kernels: fan-in scaled normal
                        prm.normal_(0.0, prm[0].numel() ** -0.5, generator=g)
                    elif name.endswith("weight"):  # norm gains
                        prm.fill_(1.0)
                    else:
                        prm.zero_()
        self.dit.init_random(g)
        if self.lips is not None:
            with torch.no_grad():
                self.lips.head.weight.mul_(0.1)

    def param_counts(self) -> dict[str, int]:
        names = ("dit", "vae", "audio", "text") + (("lips",) if self.lips is not None else ())
        return {name: sum(p.numel() for p in getattr(self, name).parameters()) for name in names}


__all__ = ["FlowActModel", "AudioEncoder", "MMDiT", "TextEncoder", "VideoVAE"]
