"""Plain PyTorch references for every hot-path op. The kernels must match these.

Layout conventions (shared with the Triton kernels):
- attention tensors are (batch, heads, tokens, head_dim);
- RoPE rotates the two halves of the head dim ("rotate_half" convention): for pair i,
  (x[i], x[i + D/2]) -> (x[i] cos - x[i + D/2] sin, x[i] sin + x[i + D/2] cos);
  `cos`/`sin` are (tokens, head_dim // 2), one row per token (3D positions already folded in);
- the memory bank is a pair of full-capacity buffers (batch, heads, capacity, head_dim)
  with a validity mask (batch, capacity); empty or stale slots are masked, never sliced,
  so that every shape is static.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate `x` (..., tokens, head_dim) by per-token angles given as cos/sin (tokens, head_dim/2)."""
    x1, x2 = x.chunk(2, dim=-1)
    c, s = _as(cos, x.dtype), _as(sin, x.dtype)
    return torch.cat((x1 * c - x2 * s, x1 * s + x2 * c), dim=-1)


def _as(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    # a cast that is already done costs a call all the same: at the motion MMDiT's tiny shapes the
    # calls are the cost (the numbers are the same either way)
    return t if t.dtype == dtype else t.to(dtype)


def rms_norm_rope(
    x: torch.Tensor, weight: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """QK-norm then RoPE: rope(rmsnorm(x) * weight). x: (batch, heads, tokens, head_dim)."""
    xf = _as(x, torch.float32)
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * _as(weight, torch.float32)
    return _as(rope(y, cos, sin), x.dtype)


def qk_norm_rope(
    qkv: torch.Tensor,
    q_weight: torch.Tensor,
    k_weight: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`rms_norm_rope` of q and k at once from packed q/k/v (3, batch, heads, tokens, head_dim): the
    same numbers as two calls, in half the small ops (what the motion MMDiT's tiny shapes pay for)."""
    w = torch.stack([q_weight, k_weight])[:, None, None, None]
    q, k = rms_norm_rope(qkv[:2], w, cos, sin, eps).unbind(0)
    return q, k


def bank_write(
    k: torch.Tensor,
    v: torch.Tensor,
    weight: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    k_bank: torch.Tensor,
    v_bank: torch.Tensor,
    start: int,
    eps: float = 1e-6,
) -> None:
    """Write a chunk's keys (normed and rotated at their bank positions) and values into
    bank slots [start, start + tokens). k, v: raw projections (batch, heads, tokens, head_dim)."""
    n = k.shape[2]
    k_bank[:, :, start : start + n] = _as(rms_norm_rope(k, weight, cos, sin, eps), k_bank.dtype)
    v_bank[:, :, start : start + n] = _as(v, v_bank.dtype)


def bank_gather_rope(
    k_bank: torch.Tensor,
    v_bank: torch.Tensor,
    src: torch.Tensor,
    dst: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
) -> None:
    """Move bank slots src -> dst (index tensors of equal length), rotating the keys by a
    position delta (cos/sin: (len(src), head_dim/2)); rotations compose, so a key written
    at position p and rotated by d is exactly the key at position p + d. Values are copied.
    Reads all sources before writing, so src and dst may overlap."""
    k_src = k_bank[:, :, src].clone()
    v_src = v_bank[:, :, src].clone()
    k_bank[:, :, dst] = rope(k_src.float(), cos.float(), sin.float()).to(k_bank.dtype)
    v_bank[:, :, dst] = v_src


def bank_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    k_bank: torch.Tensor,
    v_bank: torch.Tensor,
    bank_valid: torch.Tensor | None,
    chunk_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention of the chunk's queries over [valid bank slots | the chunk's own keys].

    q, k, v: (batch, heads, chunk_tokens, head_dim); k_bank, v_bank: (batch, heads,
    capacity, head_dim); bank_valid: (batch, capacity) bool, or None: every slot is valid;
    chunk_mask (optional): (chunk_tokens, chunk_tokens) bool, which of the chunk's own keys each
    query may read (True = may; every row must keep one). Returns (batch, heads, chunk_tokens, head_dim).
    """
    keys = torch.cat((_as(k_bank, q.dtype), k), dim=2) if k_bank.shape[2] else k
    values = torch.cat((_as(v_bank, q.dtype), v), dim=2) if v_bank.shape[2] else v
    if bank_valid is None and chunk_mask is None:
        return F.scaled_dot_product_attention(q, keys, values)
    b, cap = q.shape[0], k_bank.shape[2]
    if bank_valid is None:
        bank_valid = torch.ones(b, cap, dtype=torch.bool, device=q.device)
    if chunk_mask is None:
        mask = torch.cat((bank_valid, bank_valid.new_ones(b, k.shape[2])), dim=1)[:, None, None, :]
    else:
        n = q.shape[2]
        mask = torch.cat((bank_valid[:, None, :].expand(b, n, cap), chunk_mask[None].expand(b, n, -1)), dim=2)[:, None]
    return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)


def adaln_modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """LayerNorm without affine, then (1 + scale) * x + shift. x: (batch, tokens, width);
    shift, scale: (batch, width), one per chunk (diffusion forcing: one timestep per chunk)."""
    y = F.layer_norm(x.float(), (x.shape[-1],), eps=eps)
    return (y * (1 + scale.float()[:, None]) + shift.float()[:, None]).to(x.dtype)


def gated_residual(x: torch.Tensor, y: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """x + gate * y. x, y: (batch, tokens, width); gate: (batch, width)."""
    return x + gate[:, None].to(y.dtype) * y
