"""The one transformer block of flowact, for the video MMDiT and the motion MMDiT alike.

A block is MMDiT's: every token stream has its own *weight set* (modulated pre-norms, q/k/v,
QK-norm weights, output projection, MLP); attention is joint over all streams. What differs
between the passes that run it is only how attention sees its keys, so attention is a plug-in
(`Attend`: a callable over the streams' packed q/k/v):

    BankAttention    a chunk's tokens over the memory bank's cached keys/values (inference, both
                     models), optionally writing the video tokens into the bank as it goes
    BankWriter       the last block of a memory pass: keys/values into the bank, nothing else
    MaskedAttention  a whole training clip in one pass, with the diffusion-forcing mask
    (stream/seqpar.py wraps BankAttention with its all-to-all exchanges: sequence parallelism)

Modulation comes in three shapes: one per chunk (batch, 6, width) through the kernel dispatch,
one per token (batch, tokens, 6, width) in training, and `Prepared` (the motion stream's fixed
timesteps, folded once: fewer small ops on its hot path).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

import flowact_kernels as K


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of t in [0, 1] (scaled by 1000). t: (batch,) -> (batch, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = (t.float() * 1000.0)[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """AdaLN: one modulation per chunk (batch, width) goes through the kernel dispatch; one
    per token (batch, tokens, width), as in training with per-chunk noise levels, is plain torch."""
    if shift.dim() == 2:
        return K.adaln_modulate(x, shift, scale)
    y = F.layer_norm(x.float(), (x.shape[-1],), eps=1e-6)
    return (y * (1 + scale.float()) + shift.float()).to(x.dtype)


def gated(x: torch.Tensor, y: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    if gate.dim() == 2:
        return K.gated_residual(x, y, gate)
    return x + gate.to(y.dtype) * y


class Prepared(tuple):
    """A block's modulation for one weight set folded for a fixed timestep: (shift, 1 + scale, gate,
    shift, 1 + scale, gate), each (batch, 1, width). Computed once per stream (`prepare`)."""


def prepare(modulation: torch.Tensor, table: torch.Tensor) -> Prepared:
    """modulation (batch, 6, width) + a weight set's per-block table -> `Prepared`."""
    m = (modulation + table)[:, None].unbind(-2)
    return Prepared((m[0], 1 + m[1], m[2], m[3], 1 + m[4], m[5]))


class WeightSet(nn.Module):
    """One block's weights for one weight set: modulated pre-norms, qkv, qk-norm, out, MLP."""

    def __init__(self, width: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.q_norm = nn.Parameter(torch.ones(width // heads))
        self.k_norm = nn.Parameter(torch.ones(width // heads))
        self.out = nn.Linear(width, width)
        hidden = int(width * mlp_ratio)
        self.mlp_in = nn.Linear(width, hidden)
        self.mlp_out = nn.Linear(hidden, width)
        self.mod_table = nn.Parameter(torch.zeros(6, width))  # per-block share of AdaLN-single

    def modulation(self, m) -> tuple:
        """The stream's modulation (a tensor (..., 6, width), or `Prepared`) as this set's 6 slices.
        (`unbind`, not indexing: in training its backward stacks, where indexing's would fill a
        zero tensor of the whole modulation per slice.)"""
        return m if isinstance(m, Prepared) else (m + self.mod_table).unbind(-2)

    def project(self, x: torch.Tensor, m: tuple) -> torch.Tensor:
        """x (batch, tokens, width) -> packed q, k, v (3, batch, heads, tokens, head_dim)."""
        b, n, w = x.shape
        if isinstance(m, Prepared):
            h = F.layer_norm(x, (w,), eps=1e-6) * m[1] + m[0]
        else:
            h = modulate(x, m[0], m[1])
        return self.qkv(h).view(b, n, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)

    def finish(self, x: torch.Tensor, attn: torch.Tensor, m: tuple) -> torch.Tensor:
        """Output projection, gated residual, modulated MLP, gated residual."""
        if isinstance(m, Prepared):
            x = x + m[2] * self.out(attn)
            h = F.layer_norm(x, (x.shape[-1],), eps=1e-6) * m[4] + m[3]
            return x + m[5] * self.mlp_out(F.gelu(self.mlp_in(h), approximate="tanh"))
        x = gated(x, self.out(attn), m[2])
        h = modulate(x, m[3], m[4])
        return gated(x, self.mlp_out(F.gelu(self.mlp_in(h), approximate="tanh")), m[5])


# Attention sees each stream as (its weight set, packed q/k/v (3, batch, heads, tokens, head_dim)),
# in sequence order, and returns the attention output (batch, heads, all tokens, head_dim), or None
# when the pass only writes keys/values (the block then stops there).
Attend = Callable[[list[tuple[WeightSet, torch.Tensor]]], "torch.Tensor | None"]


class Block(nn.Module):
    def __init__(self, width: int, heads: int, mlp_ratio: float, set_names: tuple[str, ...]):
        super().__init__()
        self.sets = nn.ModuleDict({s: WeightSet(width, heads, mlp_ratio) for s in set_names})

    def forward(self, segments: list[tuple[str, torch.Tensor]], mods: dict, attend: Attend, finish: int | None = None):
        """segments: [(weight set, tokens (batch, n, width))] in sequence order; mods: set -> its
        modulation; `finish`: only the first `finish` segments are carried on (a last block whose
        other outputs nobody reads). Returns the updated segments, or None when `attend` returned None."""
        parts, ms = [], []
        for name, x in segments:
            ws = self.sets[name]
            m = ws.modulation(mods[name])
            parts.append((ws, ws.project(x, m)))
            ms.append(m)
        attn = attend(parts)
        if attn is None:
            return None
        b, h, n, d = attn.shape
        attn = attn.transpose(1, 2).reshape(b, n, h * d)
        out, start = [], 0
        for (name, x), (ws, _), m in zip(segments[:finish], parts, ms):
            n = x.shape[1]
            y = ws.finish(x, attn[:, start : start + n], m)
            out.append((name, y if y.dtype == x.dtype else y.to(x.dtype)))  # training: bf16 back to fp32
            start += n
        return out


@dataclass
class BankView:
    """What one forward pass sees of a memory bank (stream/bank.py owns it).

    k, v: (depth, batch, heads, capacity, head_dim); valid: (batch, capacity) bool, or None when
    every slot is known to be valid (no mask to build). Attention reads only slots [0, attend):
    the region behind it is write-only (the bank's "current" region), so no pass spends FLOPs on
    slots that are always masked.
    """

    k: torch.Tensor
    v: torch.Tensor
    valid: torch.Tensor | None
    attend: int

    def layer(self, i: int) -> "BankView":
        """Block i's share: k, v (batch, heads, capacity, head_dim), the same slots valid."""
        return BankView(self.k[i], self.v[i], self.valid, self.attend)


@dataclass
class BankWrite:
    """Where a pass writes its first stream's keys/values: slots [start, start + tokens) with keys
    rotated at the given positions (cos/sin: (tokens, head_dim/2))."""

    start: int
    cos: torch.Tensor
    sin: torch.Tensor


def qk_rope(parts, cos: torch.Tensor, sin: torch.Tensor, qk_norm=K.qk_norm_rope):
    """QK-norm (each weight set's own weights) and RoPE over the streams in order -> (q, k, v) of all
    the tokens, each (batch, heads, tokens, head_dim). cos/sin: (..., tokens, head_dim/2)."""
    qs, ks, vs, start = [], [], [], 0
    for ws, qkv in parts:
        n = qkv.shape[3]
        c, s = (cos, sin) if n == cos.shape[-2] else (cos.narrow(-2, start, n), sin.narrow(-2, start, n))
        q, k = qk_norm(qkv, ws.q_norm, ws.k_norm, c, s)
        qs.append(q)
        ks.append(k)
        vs.append(qkv[2])
        start += n
    return tuple(torch.cat(t, 2) if len(t) > 1 else t[0] for t in (qs, ks, vs))


class BankAttention:
    """A chunk's tokens over [the bank's readable slots | the chunk]. cos/sin: the chunk's tokens in
    order; `write`: the first stream's first `write_tokens` keys/values go into the bank (`into`, by
    default the one read) after this layer's attention has read it (a memory pass); chunk_mask: which
    of the chunk's tokens each may read (None: all); `record`: a list that gets each layer's (rotated
    keys, values) of the chunk."""

    def __init__(self, cos, sin, bank: BankView, write: BankWrite | None = None, write_tokens: int = 0,
                 chunk_mask: torch.Tensor | None = None, record: list | None = None,
                 into: BankView | None = None):  # fmt: skip
        self.cos, self.sin, self.bank, self.write = cos, sin, bank, write
        self.write_tokens, self.chunk_mask, self.record = write_tokens, chunk_mask, record
        self.into = bank if into is None else into

    def __call__(self, parts):
        q, k, v = qk_rope(parts, self.cos, self.sin)
        if self.record is not None:
            self.record.append((k, v))
        bank, a = self.bank, self.bank.attend
        if a == bank.k.shape[2]:  # the whole view is readable (the motion stream's memory): no slicing
            bk, bv, valid = bank.k, bank.v, bank.valid
        else:
            bk, bv, valid = bank.k[:, :, :a], bank.v[:, :, :a], bank.valid[:, :a]
        attn = K.bank_attention(q, k, v, bk, bv, valid, self.chunk_mask)
        if self.write is not None:
            ws, qkv = parts[0]
            n, w, into = self.write_tokens, self.write, self.into
            kv = qkv[1:] if n == qkv.shape[3] else qkv[1:, :, :, :n]
            K.bank_write(kv[0], kv[1], ws.k_norm, w.cos, w.sin, into.k, into.v, w.start)
        return attn


class BankWriter:
    """The last block of a pass that only fills the bank: its (only) stream's keys/values are all that
    is kept, so no attention, output projection or MLP runs."""

    def __init__(self, bank: BankView, write: BankWrite):
        self.bank, self.write = bank, write

    def __call__(self, parts) -> None:
        ws, qkv = parts[0]
        self.keep(ws, qkv[1], qkv[2])

    def keep(self, ws: WeightSet, k: torch.Tensor, v: torch.Tensor) -> None:
        """Raw keys (normed and rotated on the way in) and values (batch, heads, tokens, head_dim) into the bank."""
        w = self.write
        K.bank_write(k, v, ws.k_norm, w.cos, w.sin, self.bank.k, self.bank.v, w.start)


class MaskedAttention:
    """Training: every token of a clip at once, positions per token (cos/sin in sequence order), mask
    (tokens, tokens) or broadcastable to (batch, heads, tokens, tokens), True = may attend."""

    def __init__(self, cos, sin, mask):
        self.cos, self.sin, self.mask = cos, sin, mask

    def __call__(self, parts):
        q, k, v = qk_rope(parts, self.cos, self.sin, K.reference.qk_norm_rope)
        dt = parts[0][1].dtype  # the projections' dtype (bf16 under autocast, while activations stay fp32)
        q, k, v = q.to(dt), k.to(dt), v.to(dt)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=self.mask)
