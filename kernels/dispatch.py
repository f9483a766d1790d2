"""The one dispatch point: the Triton kernel on CUDA, the PyTorch reference elsewhere.

`FLOWACT_KERNELS=reference` (or `set_backend("reference")`) forces the reference for
debugging; `triton` forces the kernels (on CPU that needs TRITON_INTERPRET=1, set before
import); `auto` (default) uses the kernels for CUDA tensors when Triton imports.

The kernels have no backward: wherever autograd is recording (grad mode on and an input that
requires grad) the reference runs whatever the backend, so training through the inference
forward (selfforce, distill) gets its gradients on CUDA too.
"""

from __future__ import annotations

import os

import torch

from . import reference

_BACKENDS = ("auto", "reference", "triton")
_backend = os.environ.get("FLOWACT_KERNELS", "auto")
if _backend not in _BACKENDS:
    raise ValueError(f"FLOWACT_KERNELS={_backend!r}: expected one of {', '.join(_BACKENDS)}")

try:  # Triton is optional at run time: a CPU-only machine without it still renders.
    from . import triton_ops as _triton

    _triton_error = None
except Exception as exc:  # noqa: BLE001 - any import failure means "no kernels here"
    _triton, _triton_error = None, exc
if _backend == "triton" and _triton is None:  # asked for by name: never fall back in silence
    raise RuntimeError(f"FLOWACT_KERNELS=triton but the Triton kernels failed to import: {_triton_error!r}")


def set_backend(name: str) -> None:
    global _backend
    if name not in _BACKENDS:
        raise ValueError(f"kernel backend {name!r}: expected one of {', '.join(_BACKENDS)}")
    if name == "triton" and _triton is None:
        raise RuntimeError("kernel backend 'triton' requested but the Triton kernels failed to import")
    _backend = name


def backend() -> str:
    return _backend


def _use_triton(*tensors: torch.Tensor) -> bool:
    """The kernel for these inputs (the first decides the device), unless autograd needs a graph."""
    if _triton is None or _backend == "reference":
        return False
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return False
    return _backend == "triton" or tensors[0].is_cuda


def rms_norm_rope(x, weight, cos, sin, eps: float = 1e-6):
    if _use_triton(x, weight, cos, sin):
        return _triton.rms_norm_rope(x, weight, cos, sin, eps)
    return reference.rms_norm_rope(x, weight, cos, sin, eps)


def qk_norm_rope(qkv, q_weight, k_weight, cos, sin, eps: float = 1e-6):
    """q and k of packed q/k/v (3, batch, heads, tokens, head_dim), each normed and rotated."""
    if _use_triton(qkv, q_weight, k_weight, cos, sin):
        return (
            _triton.rms_norm_rope(qkv[0], q_weight, cos, sin, eps),
            _triton.rms_norm_rope(qkv[1], k_weight, cos, sin, eps),
        )
    return reference.qk_norm_rope(qkv, q_weight, k_weight, cos, sin, eps)


def bank_write(k, v, weight, cos, sin, k_bank, v_bank, start: int, eps: float = 1e-6) -> None:
    if _use_triton(k, v, weight, cos, sin, k_bank, v_bank):
        return _triton.bank_write(k, v, weight, cos, sin, k_bank, v_bank, start, eps)
    return reference.bank_write(k, v, weight, cos, sin, k_bank, v_bank, start, eps)


def bank_gather_rope(k_bank, v_bank, src, dst, cos, sin) -> None:
    if _use_triton(k_bank, v_bank, cos, sin):
        return _triton.bank_gather_rope(k_bank, v_bank, src, dst, cos, sin)
    return reference.bank_gather_rope(k_bank, v_bank, src, dst, cos, sin)


def bank_attention(q, k, v, k_bank, v_bank, bank_valid, chunk_mask=None):
    """`bank_valid` None: every bank slot is valid (a memory known full, or none at all)."""
    # a mask within the chunk (model.audio_local) has no Triton kernel, nor an empty bank (tokens that
    # read only each other): the reference op takes them
    if chunk_mask is None and k_bank.shape[2] and _use_triton(q, k, v, k_bank, v_bank):
        if bank_valid is None:
            bank_valid = torch.ones(q.shape[0], k_bank.shape[2], dtype=torch.bool, device=q.device)
        return _triton.bank_attention(q, k, v, k_bank, v_bank, bank_valid)
    return reference.bank_attention(q, k, v, k_bank, v_bank, bank_valid, chunk_mask)


def adaln_modulate(x, shift, scale, eps: float = 1e-6):
    if _use_triton(x, shift, scale):
        return _triton.adaln_modulate(x, shift, scale, eps)
    return reference.adaln_modulate(x, shift, scale, eps)


def gated_residual(x, y, gate):
    if _use_triton(x, y, gate):
        return _triton.gated_residual(x, y, gate)
    return reference.gated_residual(x, y, gate)
