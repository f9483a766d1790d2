"""Fused QK-RMSNorm + RoPE, its bank write, and the bank's rotate-and-move (compaction).

One kernel family: rows of (batch, heads, rows, head_dim) go in, are optionally
RMS-normalised (times the per-channel weight), rotated by per-row cos/sin (rotate-half
RoPE, 3D positions already folded into cos/sin), and stored at their output rows; a value
row can travel along unchanged. Which rows: contiguous from a start, or through index
vectors (gather on the way in, scatter on the way out). All math in fp32, one rounding
at the store. References: `reference.rms_norm_rope`, `bank_write`, `bank_gather_rope`.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .triton_env import check_device, pow2


@triton.jit
def _norm_rope_rows(
    X,
    V,
    W,
    COS,
    SIN,
    OUT,
    VOUT,
    SRC,
    DST,
    sx_b,
    sx_h,
    sx_t,
    sx_d,
    sv_b,
    sv_h,
    sv_t,
    sv_d,
    so_b,
    so_h,
    so_t,
    so_d,
    svo_b,
    svo_h,
    svo_t,
    svo_d,
    sc_t,
    sc_d,
    ss_t,
    ss_d,
    H,
    N,
    out_start,
    eps,
    HALF: tl.constexpr,
    BLOCK_HALF: tl.constexpr,
    BLOCK_T: tl.constexpr,
    NORM: tl.constexpr,
    ROTATE: tl.constexpr,
    HAS_V: tl.constexpr,
    GATHER: tl.constexpr,
    SCATTER: tl.constexpr,
):
    pid_t = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    t = pid_t * BLOCK_T + tl.arange(0, BLOCK_T)
    j = tl.arange(0, BLOCK_HALF)
    t_ok = t < N
    mask = t_ok[:, None] & (j < HALF)[None, :]

    if GATHER:
        src = tl.load(SRC + t, mask=t_ok, other=0).to(tl.int64)
    else:
        src = t.to(tl.int64)
    if SCATTER:
        dst = tl.load(DST + t, mask=t_ok, other=0).to(tl.int64)
    else:
        dst = out_start + t.to(tl.int64)

    x_row = X + b * sx_b + h * sx_h + src[:, None] * sx_t
    x1 = tl.load(x_row + j[None, :] * sx_d, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(x_row + (j[None, :] + HALF) * sx_d, mask=mask, other=0.0).to(tl.float32)
    if NORM:
        inv_rms = tl.rsqrt((tl.sum(x1 * x1, 1) + tl.sum(x2 * x2, 1)) / (2 * HALF) + eps)
        w1 = tl.load(W + j, mask=j < HALF, other=0.0).to(tl.float32)
        w2 = tl.load(W + HALF + j, mask=j < HALF, other=0.0).to(tl.float32)
        x1 = x1 * inv_rms[:, None] * w1[None, :]
        x2 = x2 * inv_rms[:, None] * w2[None, :]
    if ROTATE:
        c = tl.load(COS + t[:, None] * sc_t + j[None, :] * sc_d, mask=mask, other=1.0).to(tl.float32)
        s = tl.load(SIN + t[:, None] * ss_t + j[None, :] * ss_d, mask=mask, other=0.0).to(tl.float32)
        y1 = x1 * c - x2 * s
        y2 = x1 * s + x2 * c
    else:
        y1 = x1
        y2 = x2
    o_row = OUT + b * so_b + h * so_h + dst[:, None] * so_t
    tl.store(o_row + j[None, :] * so_d, y1.to(OUT.dtype.element_ty), mask=mask)
    tl.store(o_row + (j[None, :] + HALF) * so_d, y2.to(OUT.dtype.element_ty), mask=mask)

    if HAS_V:
        v_row = V + b * sv_b + h * sv_h + src[:, None] * sv_t
        vo_row = VOUT + b * svo_b + h * svo_h + dst[:, None] * svo_t
        v1 = tl.load(v_row + j[None, :] * sv_d, mask=mask, other=0.0)
        v2 = tl.load(v_row + (j[None, :] + HALF) * sv_d, mask=mask, other=0.0)
        tl.store(vo_row + j[None, :] * svo_d, v1.to(VOUT.dtype.element_ty), mask=mask)
        tl.store(vo_row + (j[None, :] + HALF) * svo_d, v2.to(VOUT.dtype.element_ty), mask=mask)


def _launch(
    x,
    out,
    n,
    *,
    v=None,
    vout=None,
    weight=None,
    cos=None,
    sin=None,
    src=None,
    dst=None,
    out_start=0,
    eps=1e-6,
    norm=False,
    rotate=True,
):
    b, h, _, d = x.shape
    if d % 2:
        raise ValueError(f"RoPE needs an even head_dim, got {d}")
    if n == 0 or b * h == 0:
        return
    half = d // 2
    block_half = pow2(half)
    block_t = max(1, min(64, 4096 // block_half))  # ~4k fp32 values per half in registers
    dummy = x  # pointer for absent operands; never read (constexpr flags switch them off)
    cos_s = cos.stride() if cos is not None else (0, 0)
    sin_s = sin.stride() if sin is not None else (0, 0)
    grid = (triton.cdiv(n, block_t), b * h)
    _norm_rope_rows[grid](
        x,
        v if v is not None else dummy,
        weight if weight is not None else dummy,
        cos if cos is not None else dummy,
        sin if sin is not None else dummy,
        out,
        vout if vout is not None else out,
        src if src is not None else dummy,
        dst if dst is not None else dummy,
        *x.stride(),
        *(v.stride() if v is not None else (0, 0, 0, 0)),
        *out.stride(),
        *(vout.stride() if vout is not None else (0, 0, 0, 0)),
        *cos_s,
        *sin_s,
        h,
        n,
        out_start,
        eps,
        HALF=half,
        BLOCK_HALF=block_half,
        BLOCK_T=block_t,
        NORM=norm,
        ROTATE=rotate,
        HAS_V=v is not None,
        GATHER=src is not None,
        SCATTER=dst is not None,
        num_warps=4 if block_half * block_t <= 2048 else 8,
    )


def _check_rope_tables(cos: torch.Tensor, sin: torch.Tensor, n: int, d: int, op: str) -> None:
    if cos.shape != (n, d // 2) or sin.shape != (n, d // 2):
        raise ValueError(f"{op}: cos/sin must be ({n}, {d // 2}), got {tuple(cos.shape)} and {tuple(sin.shape)}")


def rms_norm_rope(
    x: torch.Tensor, weight: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """Triton `reference.rms_norm_rope`: rope(rmsnorm(x) * weight), x (batch, heads, tokens, head_dim)."""
    check_device(x, weight, cos, sin)
    n, d = x.shape[2], x.shape[3]
    _check_rope_tables(cos, sin, n, d, "rms_norm_rope")
    if weight.shape != (d,):
        raise ValueError(f"rms_norm_rope: weight must be ({d},), got {tuple(weight.shape)}")
    out = torch.empty_like(x)
    _launch(x, out, n, weight=weight.contiguous(), cos=cos, sin=sin, eps=eps, norm=True)
    return out


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
    """Triton `reference.bank_write`: normed, rotated keys and raw values into slots
    [start, start + tokens) of the bank, in one pass over k and v."""
    check_device(k, v, weight, cos, sin, k_bank, v_bank)
    b, h, n, d = k.shape
    cap = k_bank.shape[2]
    _check_rope_tables(cos, sin, n, d, "bank_write")
    if v.shape != k.shape or k_bank.shape != (b, h, cap, d) or v_bank.shape != k_bank.shape:
        raise ValueError(f"bank_write: k {tuple(k.shape)}, v {tuple(v.shape)}, bank {tuple(k_bank.shape)}")
    if weight.shape != (d,):
        raise ValueError(f"bank_write: weight must be ({d},), got {tuple(weight.shape)}")
    start = int(start)
    if start < 0 or start + n > cap:
        raise ValueError(f"bank_write: slots [{start}, {start + n}) outside the bank's capacity {cap}")
    _launch(
        k,
        k_bank,
        n,
        v=v,
        vout=v_bank,
        weight=weight.contiguous(),
        cos=cos,
        sin=sin,
        out_start=start,
        eps=eps,
        norm=True,
    )


def bank_gather_rope(
    k_bank: torch.Tensor,
    v_bank: torch.Tensor,
    src: torch.Tensor,
    dst: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
) -> None:
    """Triton `reference.bank_gather_rope`: move slots src -> dst, keys rotated by a delta.

    Two launches: gather + rotate into a scratch buffer, then scatter. Reading every source
    before the first write is what makes overlapping src/dst (sliding a region) safe; one
    launch cannot promise that across its programs."""
    check_device(k_bank, v_bank, src, dst, cos, sin)
    b, h, cap, d = k_bank.shape
    n = src.shape[0]
    if src.shape != (n,) or dst.shape != (n,):
        raise ValueError(f"bank_gather_rope: src {tuple(src.shape)} and dst {tuple(dst.shape)} must be equal 1-D")
    if v_bank.shape != k_bank.shape:
        raise ValueError(f"bank_gather_rope: k_bank {tuple(k_bank.shape)} vs v_bank {tuple(v_bank.shape)}")
    _check_rope_tables(cos, sin, n, d, "bank_gather_rope")
    if n == 0:
        return
    src = src.to(torch.int64).contiguous()
    dst = dst.to(torch.int64).contiguous()
    k_tmp = torch.empty((b, h, n, d), device=k_bank.device, dtype=k_bank.dtype)
    v_tmp = torch.empty((b, h, n, d), device=v_bank.device, dtype=v_bank.dtype)
    _launch(k_bank, k_tmp, n, v=v_bank, vout=v_tmp, cos=cos, sin=sin, src=src, rotate=True)
    _launch(k_tmp, k_bank, n, v=v_tmp, vout=v_bank, dst=dst, rotate=False)
