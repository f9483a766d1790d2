"""Grow a model's latent space by more channels (preset vae.latent_channels), keeping what it does:

    python scripts/grow_latent.py --preset runs/l16/toon-128-l16.yaml \
        --weights runs/a17/memory3500.safetensors --out runs/l16/grown.safetensors

The VAE's new latent channels start as a small random projection of the encoder's features, with
little posterior noise (log-variance -6), and the decoder reads them through zero weights; the
transformer embeds them through zero weights and predicts zero velocity for them. So the grown
model renders exactly what the old one did, and training (the `vae` stage, then the transformer
stages on a new latent cache) decides what the new channels carry: on toon-128 the open mouth,
which 8 channels at 1/8 of the frame's size lose (docs/experiments.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from safetensors.torch import load_file

from flowact import weights as W
from flowact.config import load_preset
from flowact.model import FlowActModel


def grow(old: dict[str, torch.Tensor], own: dict[str, torch.Tensor], c_old: int, seed: int) -> dict:
    """The grown state dict: `own` (the new model's fresh tensors) with `old` copied in; raises on
    a tensor whose shape changed that this does not know how to grow."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, new in own.items():
        if k not in old:
            continue
        v = old[k].float()
        if v.shape == new.shape:
            out[k] = v
            continue
        t = torch.zeros_like(new, dtype=torch.float32)
        if k == "vae.encoder.conv_out.weight" or k == "vae.encoder.conv_out.bias":
            c_new = new.shape[0] // 2  # rows: [mean | log-variance]
            t[:c_old], t[c_new : c_new + c_old] = v[:c_old], v[c_old:]
            if k.endswith("weight"):  # the new means: a small projection of the features
                t[c_old:c_new] = torch.randn(t[c_old:c_new].shape, generator=g) * 0.02
            else:
                t[c_new + c_old :] = -6.0  # the new channels' posterior noise starts small
        elif k == "vae.decoder.conv_in.conv.weight":  # (out, latent channels, ...): new inputs read at zero
            t[:, :c_old] = v
        elif k in ("vae.latent_mean", "vae.latent_std"):
            t[:c_old] = v
            if k.endswith("std"):
                t[c_old:] = 1.0
        elif k in ("dit.embed.video.weight", "dit.embed.reference.weight"):  # (width, channels * p * p)
            t[:, : v.shape[1]] = v  # patchify puts a channel's p * p values together, channels in order
        elif k in ("dit.final.weight", "dit.final.bias"):  # (channels * p * p, ...): zero velocity for new ones
            t[: v.shape[0]] = v
        else:
            raise SystemExit(f"{k}: shape {tuple(v.shape)} -> {tuple(new.shape)}, no rule to grow it")
        out[k] = t
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", required=True, help="the preset with more vae.latent_channels")
    ap.add_argument("--weights", required=True, help="weights to grow from (the same preset, fewer channels)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    preset = load_preset(a.preset)
    old = load_file(a.weights)
    c_old = old["vae.latent_mean"].shape[0]
    if preset.vae.latent_channels <= c_old:
        raise SystemExit(f"{a.preset}: {preset.vae.latent_channels} latent channels, the weights have {c_old}")
    model = FlowActModel(preset)
    model.init_random(a.seed)
    own = model.state_dict()
    grown = grow(old, own, c_old, a.seed)
    model.load_state_dict(grown, strict=False)
    fresh = sorted({k.rsplit(".", 1)[0] for k in own if k not in grown})
    a.out.parent.mkdir(parents=True, exist_ok=True)
    W.save(model, a.out, torch.float32)
    c_new = preset.vae.latent_channels
    print(f"grown {a.out}: latent channels {c_old} -> {c_new}; {len(grown)} tensors kept; fresh: {fresh}")


if __name__ == "__main__":
    main()
