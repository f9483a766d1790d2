"""What one chunk costs, without running it: the model built on the meta device, one
chunk step traced for shapes and counted for FLOPs (torch's FlopCounterMode)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..config import Preset
from ..model import FlowActModel
from ..model.vae import DecoderState
from .bank import MemoryBank


@dataclass(frozen=True)
class ChunkCost:
    params: dict  # per sub-network
    chunk_tokens: int  # query tokens of one pass (video + audio + text)
    bank_tokens: int  # bank capacity, all regions
    flops_per_pass: int  # one MMDiT pass over a chunk
    flops_per_chunk: int  # NFE passes + the memory pass + VAE decode (+ the lip refiner)
    decode_flops: int
    shapes: dict  # name -> shape of one chunk step's tensors


def chunk_cost(preset: Preset) -> ChunkCost:
    with torch.device("meta"):
        model = FlowActModel(preset)
    p = preset
    c, T = p.stream.chunk_latents, p.tokens_per_latent
    bank = MemoryBank(p, 1, "meta", torch.float32)
    h, w = p.latent_hw
    z = torch.empty(1, p.vae.latent_channels, c, h, w, device="meta")
    audio = torch.empty(1, c * p.audio.tokens_per_latent, p.audio.width, device="meta")
    text = torch.empty(1, p.text.tokens, p.text.width, device="meta")
    t = torch.empty(1, device="meta")
    n = c * T + audio.shape[1] + text.shape[1]
    cos = torch.empty(n, p.head_dim // 2, device="meta")
    shapes = {
        "latents": tuple(z.shape),
        "audio_tokens": tuple(audio.shape),
        "text_tokens": tuple(text.shape),
        "bank_k": tuple(bank.k.shape),
    }
    with torch.no_grad():
        with FlopCounterMode(display=False) as fc:
            v = model.dit(z, t, audio, text, bank.view(), cos, cos)
        per_pass = fc.get_total_flops()
        shapes["velocity"] = tuple(v.shape)
        model.dit(z, t, audio, text, bank.view(), cos, cos, write=bank.chunk_write())
        bank.commit(0)
        st = DecoderState()
        model.vae.decode(z[:, :, :1], st, reference=torch.empty(1, 3, p.video.height, p.video.width, device="meta"))
        win = model.audio.windows(torch.empty(400, p.audio.mel_bins, device="meta"), 0, c)
        with FlopCounterMode(display=False) as fc:
            frames = model.vae.decode(z, st)
            if model.lips is not None:  # the lip refiner runs in the decode stage
                frames = model.lips(frames, win[None])
        decode = fc.get_total_flops()
        shapes["frames"] = tuple(frames.shape)
        shapes["audio_windows"] = tuple(win.shape)
        shapes["audio_encoder_out"] = tuple(model.audio(win[None]).shape)
    nfe = len(p.sampler_timesteps()) - 1
    return ChunkCost(model.param_counts(), n, bank.capacity, per_pass, per_pass * (nfe + 1) + decode, decode, shapes)
