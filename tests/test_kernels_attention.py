"""Memory-bank attention: the Triton kernel against the PyTorch reference.

Runs under TRITON_INTERPRET=1 on CPU (conftest sets it) with tiny shapes, and on CUDA
when present. The reference runs in fp32 on the same (rounded) inputs, so the tolerance
measures only the kernel's own error for each dtype.
"""

import math

import pytest
import torch

triton_ops = pytest.importorskip("flowact_kernels.triton_ops")
from flowact_kernels import reference  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if DEVICE == "cpu" and not triton_ops.INTERPRET:
    pytest.skip("no CUDA and TRITON_INTERPRET unset", allow_module_level=True)

# bf16 is checked too: the kernel upcasts its dot operands under the interpreter.
TOL = {torch.float32: 2e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2}


def _bank(b, h, cap, d, dtype, valid_frac, gen):
    k_bank = torch.randn(b, h, cap, d, generator=gen).to(DEVICE, dtype)
    v_bank = torch.randn(b, h, cap, d, generator=gen).to(DEVICE, dtype)
    valid = (torch.rand(b, cap, generator=gen) < valid_frac).to(DEVICE)
    return k_bank, v_bank, valid


def _check(q, k, v, k_bank, v_bank, valid):
    out = triton_ops.bank_attention(q, k, v, k_bank, v_bank, valid)
    f = [t.float() for t in (q, k, v, k_bank, v_bank)]
    ref = reference.bank_attention(*f, valid)
    assert out.shape == ref.shape and out.dtype == q.dtype
    torch.testing.assert_close(out.float(), ref, atol=TOL[q.dtype], rtol=TOL[q.dtype])
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    "b,h,n,cap,d,valid_frac",
    [
        (1, 2, 37, 50, 64, 0.6),  # odd chunk and bank sizes: tails on both loops
        (2, 1, 16, 96, 128, 0.3),  # head_dim 128, sparse bank
        (1, 1, 70, 130, 64, 1.0),  # full bank, several tiles
        (2, 2, 9, 20, 32, 0.5),  # smaller head dim, chunk smaller than a tile
        (1, 1, 1, 5, 64, 0.5),  # a single query, a bank smaller than a tile
    ],
)
def test_matches_reference(dtype, b, h, n, cap, d, valid_frac):
    gen = torch.Generator().manual_seed(b * 1000 + n * 10 + d)
    q, k, v = (torch.randn(b, h, n, d, generator=gen).to(DEVICE, dtype) for _ in range(3))
    _check(q, k, v, *_bank(b, h, cap, d, dtype, valid_frac, gen))


def test_ragged_fill_per_batch_and_empty_bank():
    """Batch rows with different fill levels, one with no valid slot at all: that row must
    equal plain self-attention over the chunk."""
    gen = torch.Generator().manual_seed(1)
    b, h, n, cap, d = 3, 2, 21, 40, 64
    q, k, v = (torch.randn(b, h, n, d, generator=gen).to(DEVICE) for _ in range(3))
    k_bank, v_bank, _ = _bank(b, h, cap, d, torch.float32, 1.0, gen)
    valid = torch.zeros(b, cap, dtype=torch.bool, device=DEVICE)
    valid[1, :13] = True  # partly filled from the front
    valid[2, 5:33:3] = True  # holes everywhere
    out = _check(q, k, v, k_bank, v_bank, valid)
    self_only = torch.nn.functional.scaled_dot_product_attention(q[:1], k[:1], v[:1])
    torch.testing.assert_close(out[:1], self_only, atol=2e-5, rtol=2e-5)


def test_invalid_slots_never_leak():
    """Whatever sits in empty slots (here NaN and huge values) must not change the output."""
    gen = torch.Generator().manual_seed(2)
    b, h, n, cap, d = 1, 2, 12, 48, 64
    q, k, v = (torch.randn(b, h, n, d, generator=gen).to(DEVICE) for _ in range(3))
    k_bank, v_bank, valid = _bank(b, h, cap, d, torch.float32, 0.5, gen)
    clean = triton_ops.bank_attention(q, k, v, k_bank, v_bank, valid)
    dirty_k, dirty_v = k_bank.clone(), v_bank.clone()
    dirty_k[:, :, ~valid[0]] = 1e4
    dirty_v[:, :, ~valid[0]] = float("nan")
    dirty = triton_ops.bank_attention(q, k, v, dirty_k, dirty_v, valid)
    assert torch.isfinite(dirty).all()
    torch.testing.assert_close(dirty, clean, atol=0, rtol=0)


def test_zero_capacity_and_different_key_length():
    gen = torch.Generator().manual_seed(3)
    q = torch.randn(1, 2, 10, 64, generator=gen).to(DEVICE)
    k, v = (torch.randn(1, 2, 23, 64, generator=gen).to(DEVICE) for _ in range(2))
    _check(q, k, v, *_bank(1, 2, 0, 64, torch.float32, 1.0, gen))
    _check(q, k, v, *_bank(1, 2, 33, 64, torch.float32, 0.7, gen))


def test_strided_inputs_and_output_layout():
    """q/k/v as views of one fused qkv projection (batch, tokens, 3, heads, head_dim) and a
    bank that is a view of a larger buffer: no copies needed, and the output's memory is
    (batch, tokens, heads, head_dim) so merging heads is free."""
    gen = torch.Generator().manual_seed(4)
    b, n, h, d, cap = 2, 19, 3, 64, 30
    qkv = torch.randn(b, n, 3, h, d, generator=gen).to(DEVICE, torch.float16)
    q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))
    big = torch.randn(2, b, h, cap + 5, d, generator=gen).to(DEVICE, torch.float16)
    k_bank, v_bank = big[0, :, :, 5:], big[1, :, :, 5:]
    valid = (torch.rand(b, cap, generator=gen) < 0.5).to(DEVICE)
    out = _check(q, k, v, k_bank, v_bank, valid)
    assert out.transpose(1, 2).is_contiguous()


def test_bank_in_another_dtype():
    """An fp32 bank read by half-precision queries is cast per tile, as the reference does."""
    gen = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(1, 2, 13, 64, generator=gen).to(DEVICE, torch.float16) for _ in range(3))
    k_bank, v_bank, valid = _bank(1, 2, 24, 64, torch.float32, 0.5, gen)
    out = triton_ops.bank_attention(q, k, v, k_bank, v_bank, valid)
    ref = reference.bank_attention(q.float(), k.float(), v.float(), k_bank.half().float(), v_bank.half().float(), valid)
    assert out.dtype == torch.float16
    torch.testing.assert_close(out.float(), ref, atol=2e-3, rtol=2e-3)


def test_scale_matches_head_dim():
    """The softmax scale is 1/sqrt(head_dim): with a single key per row the output is that
    value whatever the scale, so check two keys against a hand-computed softmax."""
    d = 64
    q = torch.zeros(1, 1, 1, d, device=DEVICE)
    q[..., 0] = 1.0
    k = torch.zeros(1, 1, 1, d, device=DEVICE)
    v = torch.zeros(1, 1, 1, d, device=DEVICE)
    k_bank = torch.zeros(1, 1, 1, d, device=DEVICE)
    k_bank[..., 0] = 2.0
    v_bank = torch.ones(1, 1, 1, d, device=DEVICE)
    out = triton_ops.bank_attention(q, k, v, k_bank, v_bank, torch.ones(1, 1, dtype=torch.bool, device=DEVICE))
    w = math.exp(2.0 / math.sqrt(d))
    torch.testing.assert_close(out, torch.full_like(out, w / (w + 1.0)), atol=1e-6, rtol=1e-6)


def test_rejects_bad_shapes():
    q = torch.randn(1, 2, 8, 64, device=DEVICE)
    bank = torch.randn(1, 2, 16, 64, device=DEVICE)
    with pytest.raises(ValueError, match="bank_valid"):
        triton_ops.bank_attention(q, q, q, bank, bank, torch.ones(1, 16, device=DEVICE))
    with pytest.raises(ValueError, match="bank"):
        triton_ops.bank_attention(q, q, q, bank[:, :1], bank[:, :1], torch.ones(1, 16, dtype=torch.bool, device=DEVICE))
