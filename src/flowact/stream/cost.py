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
    bank = MemoryBank.of(p, 1, "meta", torch.float32)
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


@dataclass(frozen=True)
class SeqParallelCost:
    """One chunk on `ranks` transformer ranks (stream/seqpar.py), per rank r (lists by rank),
    counted by running each rank's passes on the meta device with its byte-counting comm."""

    ranks: int
    dtype: str  # of the activations exchanged and of the bytes below
    flops_per_pass: list[int]  # one denoising pass
    flops_per_chunk: list[int]  # NFE passes + the memory pass (the VAE decode is on one rank, not here)
    sent_bytes_per_pass: list[int]  # all-to-all bytes a rank sends to the others, one denoising pass
    sent_bytes_per_chunk: list[int]  # NFE passes + the memory pass
    reference_sent_bytes: list[int]  # the reference pass, once per stream
    bank_bytes: int  # this rank's head shard of the memory bank (k, v and the valid mask)
    dit_weight_bytes: int  # the transformer's weights: every rank holds all of them


def seq_parallel_cost(preset: Preset, ranks: int, dtype: torch.dtype | None = None) -> SeqParallelCost:
    """Per-rank FLOPs, memory and all-to-all volume of one chunk over `ranks` ranks, in `dtype`
    (default: the preset's CUDA dtype, where sequence parallelism runs)."""
    from .seqpar import MetaComm, SeqParallelDiT, check_heads, token_bounds

    p = preset
    check_heads(p.model.heads, ranks)
    dtype = dtype or getattr(torch, p.dtype.get("cuda", "bfloat16"))
    with torch.device("meta"):
        model = FlowActModel(p).to(dtype)
    c = p.stream.chunk_latents
    h, w = p.latent_hw
    z = torch.empty(1, p.vae.latent_channels, c, h, w, device="meta")
    ref = torch.empty(1, p.vae.latent_channels, 1, h, w, device="meta")
    audio = torch.empty(1, c * p.audio.tokens_per_latent, p.audio.width, device="meta", dtype=dtype)
    text = torch.empty(1, p.text.tokens, p.text.width, device="meta", dtype=dtype)
    t = torch.empty(1, device="meta")
    n = c * p.tokens_per_latent + audio.shape[1] + text.shape[1]
    cos = torch.empty(n, p.head_dim // 2, device="meta")
    ref_cos = torch.empty(p.tokens_per_latent, p.head_dim // 2, device="meta")
    nfe = len(p.sampler_timesteps()) - 1
    bank = MemoryBank.of(p, 1, "meta", dtype, heads=p.model.heads // ranks)
    bounds, ref_bounds = token_bounds(n, ranks), token_bounds(p.tokens_per_latent, ranks)
    n_video = c * p.tokens_per_latent
    counted: dict[tuple, tuple] = {}  # a rank's costs depend only on how many tokens of each kind it holds
    for r in range(ranks):
        key = (bounds[r + 1] - bounds[r], min(bounds[r + 1], n_video) - min(bounds[r], n_video), ref_bounds[r])
        if key in counted:
            continue
        comm = MetaComm(r, ranks)
        dit = SeqParallelDiT(model.dit, comm)
        with torch.no_grad():
            dit(ref, t, None, None, bank.view(), ref_cos, ref_cos, bank.reference_write(), "reference")
            ref_sent = comm.sent_bytes
            with FlopCounterMode(display=False) as fc:
                dit(z, t, audio, text, bank.view(), cos, cos)
            flops, sent = fc.get_total_flops(), comm.sent_bytes - ref_sent
            with FlopCounterMode(display=False) as fc:
                dit(z, t, audio, text, bank.view(), cos, cos, bank.chunk_write())
        memory_sent = comm.sent_bytes - ref_sent - sent
        counted[key] = (flops, nfe * flops + fc.get_total_flops(), sent, nfe * sent + memory_sent, ref_sent)
    per_rank = [
        counted[(bounds[r + 1] - bounds[r], min(bounds[r + 1], n_video) - min(bounds[r], n_video), ref_bounds[r])]
        for r in range(ranks)
    ]
    per_pass, per_chunk, sent_pass, sent_chunk, sent_ref = (list(col) for col in zip(*per_rank))
    return SeqParallelCost(
        ranks,
        str(dtype).replace("torch.", ""),
        per_pass,
        per_chunk,
        sent_pass,
        sent_chunk,
        sent_ref,
        bank.nbytes(),
        sum(prm.numel() for prm in model.dit.parameters()) * torch.empty(0, dtype=dtype).element_size(),
    )
