"""Fused QK-RMSNorm + RoPE, bank write, bank gather (compaction), AdaLN modulate and the
gated residual: Triton kernels against the PyTorch references, on CPU under the
interpreter (tiny shapes) and on CUDA when present."""

import pytest
import torch

triton_ops = pytest.importorskip("flowact_kernels.triton_ops")
from flowact_kernels import reference  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if DEVICE == "cpu" and not triton_ops.INTERPRET:
    pytest.skip("no CUDA and TRITON_INTERPRET unset", allow_module_level=True)

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# Both sides compute in fp32 and round once; a last-bit difference at the store is allowed.
TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


def _close(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    tol = TOL[a.dtype]
    torch.testing.assert_close(a.float(), b.float(), atol=tol, rtol=tol)


def _rope_tables(n, d, gen):
    angle = torch.rand(n, d // 2, generator=gen) * 20.0
    return angle.cos().to(DEVICE), angle.sin().to(DEVICE)


def _randn(*shape, gen, dtype=torch.float32, scale=1.0):
    return (torch.randn(*shape, generator=gen) * scale).to(DEVICE, dtype)


# ---------------------------------------------------------------- QK-RMSNorm + RoPE


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("b,h,n,d", [(1, 2, 37, 64), (2, 1, 5, 128), (1, 3, 130, 64), (1, 1, 9, 6)])
def test_rms_norm_rope(dtype, b, h, n, d):
    gen = torch.Generator().manual_seed(n * d)
    x = _randn(b, h, n, d, gen=gen, dtype=dtype, scale=3.0)
    weight = (torch.rand(d, generator=gen) + 0.5).to(DEVICE)
    cos, sin = _rope_tables(n, d, gen)
    _close(triton_ops.rms_norm_rope(x, weight, cos, sin, 1e-6), reference.rms_norm_rope(x, weight, cos, sin, 1e-6))


def test_rms_norm_rope_strided_input():
    """q as a view of a fused (batch, tokens, 3, heads, head_dim) projection."""
    gen = torch.Generator().manual_seed(5)
    qkv = _randn(2, 11, 3, 2, 64, gen=gen, dtype=torch.float16)
    q = qkv[:, :, 0].transpose(1, 2)
    weight = torch.rand(64, generator=gen).to(DEVICE)
    cos, sin = _rope_tables(11, 64, gen)
    _close(triton_ops.rms_norm_rope(q, weight, cos, sin), reference.rms_norm_rope(q, weight, cos, sin))


# ---------------------------------------------------------------- bank write


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,cap,start", [(13, 40, 0), (13, 40, 27), (24, 96, 50)])
def test_bank_write(dtype, n, cap, start):
    """Whole banks compared: the target slots hold the normed, rotated keys and raw values,
    every other slot is untouched."""
    gen = torch.Generator().manual_seed(start + n)
    b, h, d = 2, 2, 64
    k, v = _randn(b, h, n, d, gen=gen, dtype=dtype), _randn(b, h, n, d, gen=gen, dtype=dtype)
    weight = (torch.rand(d, generator=gen) + 0.5).to(DEVICE)
    cos, sin = _rope_tables(n, d, gen)
    k_bank, v_bank = _randn(b, h, cap, d, gen=gen, dtype=dtype), _randn(b, h, cap, d, gen=gen, dtype=dtype)
    k_ref, v_ref = k_bank.clone(), v_bank.clone()
    triton_ops.bank_write(k, v, weight, cos, sin, k_bank, v_bank, start)
    reference.bank_write(k, v, weight, cos, sin, k_ref, v_ref, start)
    _close(k_bank, k_ref)
    assert torch.equal(v_bank, v_ref)


def test_bank_write_casts_into_bank_dtype_and_rejects_overflow():
    gen = torch.Generator().manual_seed(6)
    k, v = _randn(1, 2, 8, 64, gen=gen), _randn(1, 2, 8, 64, gen=gen)
    weight = torch.ones(64, device=DEVICE)
    cos, sin = _rope_tables(8, 64, gen)
    k_bank = torch.zeros(1, 2, 16, 64, device=DEVICE, dtype=torch.float16)
    v_bank, k_ref, v_ref = k_bank.clone(), k_bank.clone(), k_bank.clone()
    triton_ops.bank_write(k, v, weight, cos, sin, k_bank, v_bank, 4)
    reference.bank_write(k, v, weight, cos, sin, k_ref, v_ref, 4)
    _close(k_bank, k_ref)
    _close(v_bank, v_ref)
    with pytest.raises(ValueError, match="capacity"):
        triton_ops.bank_write(k, v, weight, cos, sin, k_bank, v_bank, 9)


# ---------------------------------------------------------------- bank gather (compaction)


def _gather_case(dtype, src, dst, seed, cap=40, d=64):
    gen = torch.Generator().manual_seed(seed)
    src = torch.as_tensor(src, device=DEVICE)
    dst = torch.as_tensor(dst, device=DEVICE)
    k_bank, v_bank = _randn(2, 3, cap, d, gen=gen, dtype=dtype), _randn(2, 3, cap, d, gen=gen, dtype=dtype)
    cos, sin = _rope_tables(len(src), d, gen)
    k_ref, v_ref = k_bank.clone(), v_bank.clone()
    triton_ops.bank_gather_rope(k_bank, v_bank, src, dst, cos, sin)
    reference.bank_gather_rope(k_ref, v_ref, src, dst, cos, sin)
    _close(k_bank, k_ref)
    assert torch.equal(v_bank, v_ref)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bank_gather_overlapping_slides(dtype):
    """Sliding a region down and up by a few slots: sources overwritten by the move itself
    must have been read first."""
    # longer than one program's block of rows (64), so a one-pass move would clobber sources
    _gather_case(dtype, range(10, 100), range(7, 97), seed=7, cap=100)
    _gather_case(dtype, range(3, 93), range(9, 99), seed=8, cap=100)


def test_bank_gather_permutation_and_sparse_pick():
    _gather_case(torch.float32, [0, 1, 2, 3, 4], [4, 3, 2, 1, 0], seed=9)  # swap in place
    _gather_case(torch.float32, [31, 2, 17, 39], [5, 6, 7, 8], seed=10)  # long-term selection


def test_rotations_compose():
    """A key written at position p and moved with delta e equals the key written at p + e
    (what lets compaction re-position slots without the raw keys)."""
    gen = torch.Generator().manual_seed(11)
    n, d, cap = 6, 64, 16
    k, v = _randn(1, 1, n, d, gen=gen), _randn(1, 1, n, d, gen=gen)
    weight = torch.ones(d, device=DEVICE)
    freqs = torch.rand(d // 2, generator=gen)
    pos = torch.arange(n, dtype=torch.float32)[:, None]

    def table(p):
        return (p * freqs).cos().to(DEVICE), (p * freqs).sin().to(DEVICE)

    moved = torch.zeros(1, 1, cap, d, device=DEVICE)
    direct = torch.zeros_like(moved)
    scratch = torch.zeros_like(moved)
    triton_ops.bank_write(k, v, weight, *table(pos), moved, scratch, 0)
    triton_ops.bank_gather_rope(
        moved,
        scratch,
        torch.arange(n, device=DEVICE),
        torch.arange(n, device=DEVICE) + 8,
        *table(torch.full_like(pos, 8.0)),
    )
    triton_ops.bank_write(k, v, weight, *table(pos + 8), direct, scratch, 8)
    torch.testing.assert_close(moved[:, :, 8 : 8 + n], direct[:, :, 8 : 8 + n], atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- AdaLN and gated residual


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("b,n,w", [(2, 37, 384), (1, 5, 100), (1, 3, 2048)])
def test_adaln_modulate(dtype, b, n, w):
    gen = torch.Generator().manual_seed(n + w)
    x = _randn(b, n, w, gen=gen, dtype=dtype, scale=2.0) + 1.0
    shift, scale = _randn(b, w, gen=gen, dtype=dtype), _randn(b, w, gen=gen, dtype=dtype, scale=0.5)
    _close(triton_ops.adaln_modulate(x, shift, scale, 1e-6), reference.adaln_modulate(x, shift, scale, 1e-6))


def test_adaln_modulate_strided_and_fp32_modulation():
    """x as a slice of a longer token sequence (the video part of [video | audio | text]),
    shift/scale rows of a packed (batch, 6, width) modulation output in fp32."""
    gen = torch.Generator().manual_seed(12)
    seq = _randn(2, 30, 256, gen=gen, dtype=torch.bfloat16)
    x = seq[:, 4:25]
    mod = _randn(2, 6, 256, gen=gen)
    _close(triton_ops.adaln_modulate(x, mod[:, 0], mod[:, 1]), reference.adaln_modulate(x, mod[:, 0], mod[:, 1]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("b,n,w", [(2, 37, 384), (1, 3, 2048 + 7)])
def test_gated_residual(dtype, b, n, w):
    gen = torch.Generator().manual_seed(n + w + 1)
    x, y = _randn(b, n, w, gen=gen, dtype=dtype), _randn(b, n, w, gen=gen, dtype=dtype)
    gate = _randn(b, w, gen=gen, dtype=dtype)
    out, ref = triton_ops.gated_residual(x, y, gate), reference.gated_residual(x, y, gate)
    # the reference rounds gate * y before the add; allow that extra rounding step
    assert out.dtype == ref.dtype
    torch.testing.assert_close(out.float(), ref.float(), atol=2 * TOL[dtype], rtol=2 * TOL[dtype])


def test_gated_residual_fp32_stream_low_precision_branch():
    """An fp32 residual stream plus a bf16 branch output stays fp32, like the reference."""
    gen = torch.Generator().manual_seed(13)
    x = _randn(1, 9, 64, gen=gen)
    y = _randn(1, 9, 64, gen=gen, dtype=torch.bfloat16)
    gate = _randn(1, 64, gen=gen, dtype=torch.bfloat16)
    out, ref = triton_ops.gated_residual(x, y, gate), reference.gated_residual(x, y, gate)
    assert out.dtype == torch.float32
    # the reference rounds gate * y to bf16; the kernel keeps it in fp32 (closer to exact)
    torch.testing.assert_close(out, ref, atol=1.6e-2, rtol=1.6e-2)
    exact = x.double() + gate.double()[:, None] * y.double()
    assert (out.double() - exact).abs().max() <= (ref.double() - exact).abs().max()
