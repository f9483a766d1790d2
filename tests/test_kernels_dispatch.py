"""The one dispatch point routes to the Triton kernels or the references as the backend
switch says: 'reference' always wins, 'triton' forces the kernels (on CPU through the
interpreter), 'auto' uses them for CUDA tensors only."""

import pytest
import torch

pytest.importorskip("flowact_kernels.triton_ops")
import flowact_kernels  # noqa: E402
from flowact_kernels import dispatch, reference  # noqa: E402

OPS = ["rms_norm_rope", "bank_write", "bank_gather_rope", "bank_attention", "adaln_modulate", "gated_residual"]


def _args(name, device):
    gen = torch.Generator().manual_seed(0)

    def r(*shape):
        return torch.randn(*shape, generator=gen).to(device)

    b, h, n, d, cap, w = 1, 2, 7, 64, 12, 96
    cos, sin = r(n, d // 2), r(n, d // 2)
    return {
        "rms_norm_rope": (r(b, h, n, d), r(d), cos, sin),
        "bank_write": (r(b, h, n, d), r(b, h, n, d), r(d), cos, sin, r(b, h, cap, d), r(b, h, cap, d), 3),
        "bank_gather_rope": (
            r(b, h, cap, d),
            r(b, h, cap, d),
            torch.arange(2, 2 + n, device=device),
            torch.arange(n, device=device),
            cos,
            sin,
        ),
        "bank_attention": (
            r(b, h, n, d),
            r(b, h, n, d),
            r(b, h, n, d),
            r(b, h, cap, d),
            r(b, h, cap, d),
            torch.rand(b, cap, generator=gen).to(device) < 0.5,
        ),
        "adaln_modulate": (r(b, n, w), r(b, w), r(b, w)),
        "gated_residual": (r(b, n, w), r(b, n, w), r(b, w)),
    }[name]


@pytest.fixture
def spies(monkeypatch):
    """Count calls reaching each side while letting them run."""
    calls = []
    for side, module in (("triton", dispatch._triton), ("reference", reference)):
        for name in OPS:
            fn = getattr(module, name)

            def spy(*a, _fn=fn, _tag=(side, name), **k):
                calls.append(_tag)
                return _fn(*a, **k)

            monkeypatch.setattr(module, name, spy)
    before = dispatch.backend()
    yield calls
    dispatch.set_backend(before)


@pytest.mark.parametrize("name", OPS)
def test_forced_triton_routes_to_kernel_and_matches(spies, name):
    if not torch.cuda.is_available() and not dispatch._triton.INTERPRET:
        pytest.skip("no CUDA and TRITON_INTERPRET unset")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    args = _args(name, device)
    ref_args = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
    flowact_kernels.set_backend("triton")
    out = getattr(flowact_kernels, name)(*args)
    assert spies == [("triton", name)]
    flowact_kernels.set_backend("reference")
    ref = getattr(flowact_kernels, name)(*ref_args)
    assert spies[1] == ("reference", name)
    if out is None:  # in-place bank ops: compare the buffers they wrote
        out, ref = (
            [a for a in args if isinstance(a, torch.Tensor)],
            [a for a in ref_args if isinstance(a, torch.Tensor)],
        )
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_auto_uses_reference_for_cpu_tensors(spies):
    flowact_kernels.set_backend("auto")
    flowact_kernels.adaln_modulate(*_args("adaln_modulate", "cpu"))
    assert spies == [("reference", "adaln_modulate")]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_auto_uses_kernels_for_cuda_tensors_unless_forced_off(spies):
    flowact_kernels.set_backend("auto")
    flowact_kernels.gated_residual(*_args("gated_residual", "cuda"))
    flowact_kernels.set_backend("reference")
    flowact_kernels.gated_residual(*_args("gated_residual", "cuda"))
    assert spies == [("triton", "gated_residual"), ("reference", "gated_residual")]


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="expected one of"):
        flowact_kernels.set_backend("cuda")


def test_forced_triton_qk_norm_rope_runs_the_kernel_twice_and_matches(spies):
    """qk_norm_rope has no kernel of its own: on the kernel side it is rms_norm_rope's, once for q, once for k."""
    if not torch.cuda.is_available() and not dispatch._triton.INTERPRET:
        pytest.skip("no CUDA and TRITON_INTERPRET unset")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    x, w, cos, sin = _args("rms_norm_rope", device)
    qkv = torch.stack([x, 2 * x, -x])
    flowact_kernels.set_backend("triton")
    q, k = flowact_kernels.qk_norm_rope(qkv, w, w.flip(0), cos, sin)
    assert spies == [("triton", "rms_norm_rope")] * 2
    flowact_kernels.set_backend("reference")
    rq, rk = flowact_kernels.qk_norm_rope(qkv, w, w.flip(0), cos, sin)
    torch.testing.assert_close((q, k), (rq, rk), atol=1e-5, rtol=1e-5)


def test_forced_triton_bank_attention_with_a_full_bank_matches(spies):
    if not torch.cuda.is_available() and not dispatch._triton.INTERPRET:
        pytest.skip("no CUDA and TRITON_INTERPRET unset")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    q, k, v, kb, vb, _ = _args("bank_attention", device)
    flowact_kernels.set_backend("triton")
    out = flowact_kernels.bank_attention(q, k, v, kb, vb, None)  # None: every slot valid
    assert spies == [("triton", "bank_attention")]
    flowact_kernels.set_backend("reference")
    ref = flowact_kernels.bank_attention(q, k, v, kb, vb, torch.ones(1, kb.shape[2], dtype=torch.bool, device=device))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
