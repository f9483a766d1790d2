"""What the Triton kernels need to know about where they run.

`INTERPRET` mirrors TRITON_INTERPRET as Triton read it when the kernels were decorated:
under the CPU interpreter a few things differ (bf16 `tl.dot` is wrong there, autotuning
with several configs fails, and every tile step costs milliseconds), so the wrappers pick
small fixed configs and upcast dot operands to fp32 when it is set.
"""

from __future__ import annotations

import os

import torch
import triton

INTERPRET = os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def pow2(n: int, minimum: int = 1) -> int:
    """Smallest power of two >= max(n, minimum): Triton blocks must be powers of two."""
    return max(triton.next_power_of_2(max(int(n), 1)), minimum)


def check_device(*tensors: torch.Tensor) -> None:
    """Kernels launch on CUDA, or on CPU only under the interpreter; one device for all."""
    dev = tensors[0].device
    for t in tensors:
        if t.device != dev:
            raise ValueError(f"kernel inputs on different devices: {t.device} and {dev}")
    if dev.type != "cuda" and not INTERPRET:
        raise RuntimeError(f"Triton kernels need CUDA tensors (got {dev}) or TRITON_INTERPRET=1 set before import")


def dot_precision(dtype: torch.dtype) -> str:
    """fp32 inputs use exact fp32 products (as the reference does), not TF32."""
    return "ieee" if dtype == torch.float32 else "tf32"
