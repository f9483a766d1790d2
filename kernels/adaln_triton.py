"""Fused AdaLN modulate (LayerNorm without affine, then (1 + scale) * x + shift) and the
gated residual (x + gate * y). Each reads its activations once and writes once; the
per-chunk shift/scale/gate vectors (batch, width) stay in registers for a block of rows.
References: `reference.adaln_modulate`, `reference.gated_residual`.

Layout: x, y (batch, tokens, width) with any strides; shift, scale, gate (batch, width).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .triton_env import check_device, pow2


@triton.jit
def _adaln_modulate_rows(
    X,
    SHIFT,
    SCALE,
    OUT,
    sx_b,
    sx_t,
    sx_w,
    ssh_b,
    ssh_w,
    ssc_b,
    ssc_w,
    so_b,
    so_t,
    so_w,
    N,
    W,
    eps,
    BLOCK_T: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    pid_t = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    rows = pid_t * BLOCK_T + tl.arange(0, BLOCK_T)
    cols = tl.arange(0, BLOCK_W)
    col_ok = cols < W
    mask = (rows < N)[:, None] & col_ok[None, :]
    x = tl.load(X + b * sx_b + rows[:, None] * sx_t + cols[None, :] * sx_w, mask=mask, other=0.0).to(tl.float32)
    mean = tl.sum(x, 1) / W
    xc = tl.where(mask, x - mean[:, None], 0.0)
    inv_std = tl.rsqrt(tl.sum(xc * xc, 1) / W + eps)
    shift = tl.load(SHIFT + b * ssh_b + cols * ssh_w, mask=col_ok, other=0.0).to(tl.float32)
    scale = tl.load(SCALE + b * ssc_b + cols * ssc_w, mask=col_ok, other=0.0).to(tl.float32)
    y = xc * inv_std[:, None] * (1.0 + scale[None, :]) + shift[None, :]
    tl.store(OUT + b * so_b + rows[:, None] * so_t + cols[None, :] * so_w, y.to(OUT.dtype.element_ty), mask=mask)


@triton.jit
def _gated_residual_rows(
    X,
    Y,
    GATE,
    OUT,
    sx_b,
    sx_t,
    sx_w,
    sy_b,
    sy_t,
    sy_w,
    sg_b,
    sg_w,
    so_b,
    so_t,
    so_w,
    N,
    W,
    BLOCK_T: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    pid_t = tl.program_id(0)
    pid_w = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    rows = pid_t * BLOCK_T + tl.arange(0, BLOCK_T)
    cols = pid_w * BLOCK_W + tl.arange(0, BLOCK_W)
    col_ok = cols < W
    mask = (rows < N)[:, None] & col_ok[None, :]
    x = tl.load(X + b * sx_b + rows[:, None] * sx_t + cols[None, :] * sx_w, mask=mask, other=0.0).to(tl.float32)
    y = tl.load(Y + b * sy_b + rows[:, None] * sy_t + cols[None, :] * sy_w, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(GATE + b * sg_b + cols * sg_w, mask=col_ok, other=0.0).to(tl.float32)
    tl.store(
        OUT + b * so_b + rows[:, None] * so_t + cols[None, :] * so_w,
        (x + g[None, :] * y).to(OUT.dtype.element_ty),
        mask=mask,
    )


def _row_block(block_w: int) -> int:
    return max(1, min(64, 4096 // block_w))  # ~4k values per program: no register spills at width 2048


def _check_vec(name: str, t: torch.Tensor, b: int, w: int) -> None:
    if t.shape != (b, w):
        raise ValueError(f"{name} must be (batch, width) = ({b}, {w}), got {tuple(t.shape)}")


def adaln_modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Triton `reference.adaln_modulate`: LayerNorm(x) * (1 + scale) + shift, x (batch, tokens, width)."""
    check_device(x, shift, scale)
    b, n, w = x.shape
    _check_vec("adaln_modulate: shift", shift, b, w)
    _check_vec("adaln_modulate: scale", scale, b, w)
    out = torch.empty_like(x)
    if out.numel() == 0:
        return out
    block_w = pow2(w)
    block_t = _row_block(block_w)
    _adaln_modulate_rows[(triton.cdiv(n, block_t), b)](
        x,
        shift,
        scale,
        out,
        *x.stride(),
        *shift.stride(),
        *scale.stride(),
        *out.stride(),
        n,
        w,
        eps,
        BLOCK_T=block_t,
        BLOCK_W=block_w,
        num_warps=4 if block_w * block_t <= 2048 else 8,
    )
    return out


def gated_residual(x: torch.Tensor, y: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """Triton `reference.gated_residual`: x + gate * y, x and y (batch, tokens, width), gate (batch, width)."""
    check_device(x, y, gate)
    b, n, w = x.shape
    if y.shape != x.shape:
        raise ValueError(f"gated_residual: x {tuple(x.shape)} and y {tuple(y.shape)} differ")
    _check_vec("gated_residual: gate", gate, b, w)
    out = torch.empty(x.shape, device=x.device, dtype=torch.result_type(x, y))
    if out.numel() == 0:
        return out
    block_w = min(pow2(w), 1024)
    block_t = _row_block(block_w)
    grid = (triton.cdiv(n, block_t), triton.cdiv(w, block_w), b)
    _gated_residual_rows[grid](
        x,
        y,
        gate,
        out,
        *x.stride(),
        *y.stride(),
        *gate.stride(),
        *out.stride(),
        n,
        w,
        BLOCK_T=block_t,
        BLOCK_W=block_w,
        num_warps=4,
    )
    return out
