"""Memory-bank attention: the chunk's queries over [valid bank slots | the chunk's own keys].

Flash-style forward (online softmax in the exp2 domain, fp32 accumulators). The bank's
K/V buffers are read in place, tile by tile, and its validity mask is applied per tile, so
no step ever concatenates or copies the bank; a second loop then covers the chunk's own
keys, which are always valid. Reference: `reference.bank_attention`.

Layout: q, k, v (batch, heads, tokens, head_dim) and k_bank, v_bank (batch, heads,
capacity, head_dim) with any strides; bank_valid (batch, capacity) bool. The output has
the shape (batch, heads, chunk_tokens, head_dim) but (batch, tokens, heads, head_dim)
memory, so the usual `out.transpose(1, 2).reshape(b, n, h * d)` is free.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from .triton_env import INTERPRET, check_device, dot_precision, pow2

_LOG2E = 1.4426950408889634


@triton.jit
def _attend_tile(acc, l_i, m_i, q, kt_ptrs, v_ptrs, key_ok, k_load_ok, v_load_ok, qk_scale, PRECISION: tl.constexpr):
    """One online-softmax step over a tile of keys: scores, running max/sum, rescale, P @ V.
    Masked keys score -inf; masked V rows load as 0 so stale bank slots (even NaN) never leak."""
    kt = tl.load(kt_ptrs, mask=k_load_ok, other=0.0).to(q.dtype)
    s = tl.dot(q, kt, input_precision=PRECISION) * qk_scale
    s = tl.where(key_ok[None, :], s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 1))
    alpha = tl.math.exp2(m_i - m_new)
    p = tl.math.exp2(s - m_new[:, None])
    l_i = l_i * alpha + tl.sum(p, 1)
    v = tl.load(v_ptrs, mask=v_load_ok, other=0.0).to(q.dtype)
    acc = acc * alpha[:, None] + tl.dot(p.to(q.dtype), v, input_precision=PRECISION)
    return acc, l_i, m_new


@triton.jit
def _bank_attention_fwd(
    Q,
    K,
    V,
    KB,
    VB,
    VALID,
    OUT,
    sq_b,
    sq_h,
    sq_t,
    sq_d,
    sk_b,
    sk_h,
    sk_t,
    sk_d,
    sv_b,
    sv_h,
    sv_t,
    sv_d,
    skb_b,
    skb_h,
    skb_t,
    skb_d,
    svb_b,
    svb_h,
    svb_t,
    svb_d,
    sm_b,
    sm_t,
    so_b,
    so_h,
    so_t,
    so_d,
    H,
    N_Q,
    N_K,
    CAP,
    qk_scale,
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    UPCAST: tl.constexpr,
    PRECISION: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < HEAD_DIM
    # int64 bases: bank buffers of r1-480p presets pass 2**31 elements across batch*heads.
    b64 = b.to(tl.int64)
    h64 = h.to(tl.int64)

    q = tl.load(
        Q + b64 * sq_b + h64 * sq_h + offs_m[:, None] * sq_t + offs_d[None, :] * sq_d,
        mask=(offs_m[:, None] < N_Q) & d_ok[None, :],
        other=0.0,
    )
    if UPCAST:  # the interpreter's bf16 tl.dot is wrong; fp32 operands are exact there
        q = q.to(tl.float32)

    m_i = tl.full([BLOCK_M], -1.0e30, tl.float32)  # finite: a fully masked tile must not make NaNs
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)

    # 1) the bank, in place; invalid slots are masked, never sliced away.
    kb_base = KB + b64 * skb_b + h64 * skb_h
    vb_base = VB + b64 * svb_b + h64 * svb_h
    for start_n in range(0, CAP, BLOCK_N):
        cols = start_n + offs_n
        in_cap = cols < CAP
        valid = tl.load(VALID + b64 * sm_b + cols * sm_t, mask=in_cap, other=0) != 0
        acc, l_i, m_i = _attend_tile(
            acc,
            l_i,
            m_i,
            q,
            kb_base + cols[None, :] * skb_t + offs_d[:, None] * skb_d,
            vb_base + cols[:, None] * svb_t + offs_d[None, :] * svb_d,
            valid,
            in_cap[None, :] & d_ok[:, None],
            valid[:, None] & d_ok[None, :],
            qk_scale,
            PRECISION,
        )

    # 2) the chunk's own keys: always valid, only the tail is masked.
    k_base = K + b64 * sk_b + h64 * sk_h
    v_base = V + b64 * sv_b + h64 * sv_h
    for start_n in range(0, N_K, BLOCK_N):
        cols = start_n + offs_n
        in_k = cols < N_K
        acc, l_i, m_i = _attend_tile(
            acc,
            l_i,
            m_i,
            q,
            k_base + cols[None, :] * sk_t + offs_d[:, None] * sk_d,
            v_base + cols[:, None] * sv_t + offs_d[None, :] * sv_d,
            in_k,
            in_k[None, :] & d_ok[:, None],
            in_k[:, None] & d_ok[None, :],
            qk_scale,
            PRECISION,
        )

    l_i = tl.where(l_i == 0.0, 1.0, l_i)  # only with no keys at all: output 0, not NaN
    out = acc / l_i[:, None]
    tl.store(
        OUT + b64 * so_b + h64 * so_h + offs_m[:, None] * so_t + offs_d[None, :] * so_d,
        out.to(OUT.dtype.element_ty),
        mask=(offs_m[:, None] < N_Q) & d_ok[None, :],
    )


def _configs() -> list[triton.Config]:
    # (BLOCK_M, BLOCK_N, warps, stages): the usual flash-forward sweet spots for d = 64/128.
    shapes = [(128, 64, 4, 3), (128, 64, 8, 3), (128, 128, 8, 3), (64, 64, 4, 3), (128, 32, 4, 4), (64, 128, 4, 3)]
    return [triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s) for m, n, w, s in shapes]


# Autotuning only on a real GPU: the interpreter rejects several configs and gains nothing.
_bank_attention_tuned = (
    None
    if INTERPRET
    else triton.autotune(configs=_configs(), key=["N_Q", "N_K", "CAP", "HEAD_DIM", "UPCAST", "PRECISION"])(
        _bank_attention_fwd
    )
)


def bank_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    k_bank: torch.Tensor,
    v_bank: torch.Tensor,
    bank_valid: torch.Tensor,
) -> torch.Tensor:
    """Triton `reference.bank_attention` (same arguments, same result within dtype tolerance)."""
    check_device(q, k, v, k_bank, v_bank, bank_valid)
    b, h, n_q, d = q.shape
    n_k = k.shape[2]
    cap = k_bank.shape[2]
    if k.shape != (b, h, n_k, d) or v.shape != k.shape:
        raise ValueError(f"bank_attention: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)} disagree")
    if k_bank.shape != (b, h, cap, d) or v_bank.shape != k_bank.shape:
        raise ValueError(f"bank_attention: bank {tuple(k_bank.shape)}/{tuple(v_bank.shape)} vs q {tuple(q.shape)}")
    if bank_valid.shape != (b, cap) or bank_valid.dtype != torch.bool:
        raise ValueError(
            f"bank_attention: bank_valid must be bool (batch, capacity), got "
            f"{bank_valid.dtype} {tuple(bank_valid.shape)}"
        )
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError(f"bank_attention: q/k/v dtypes differ ({q.dtype}, {k.dtype}, {v.dtype})")

    out = torch.empty((b, n_q, h, d), device=q.device, dtype=q.dtype).transpose(1, 2)
    if out.numel() == 0:
        return out
    valid = bank_valid.view(torch.uint8)  # same bytes; Triton loads u8 more portably than i1
    upcast = INTERPRET and q.dtype == torch.bfloat16
    args = (
        q,
        k,
        v,
        k_bank,
        v_bank,
        valid,
        out,
        *q.stride(),
        *k.stride(),
        *v.stride(),
        *k_bank.stride(),
        *v_bank.stride(),
        *valid.stride(),
        *out.stride(),
        h,
        n_q,
        n_k,
        cap,
        _LOG2E / math.sqrt(d),
    )
    meta = dict(HEAD_DIM=d, BLOCK_D=pow2(d, 16), UPCAST=upcast, PRECISION=dot_precision(q.dtype))
    if _bank_attention_tuned is None:
        block = 32 if max(n_q, n_k, cap) <= 64 else 64
        grid = (triton.cdiv(n_q, block), b * h)
        _bank_attention_fwd[grid](*args, BLOCK_M=block, BLOCK_N=block, **meta)
    else:
        grid = lambda m: (triton.cdiv(n_q, m["BLOCK_M"]), b * h)  # noqa: E731
        _bank_attention_tuned[grid](*args, **meta)
    return out
