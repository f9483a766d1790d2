"""flowact's hot-path ops: plain PyTorch references and Triton kernels behind one dispatch point.

Installed as `flowact_kernels` (the name `kernels` is taken by other packages). The model
imports only the functions re-exported here; `dispatch` decides, per call, whether the
Triton kernel or the reference runs.
"""

from .dispatch import (
    adaln_modulate,
    backend,
    bank_attention,
    bank_gather_rope,
    bank_write,
    gated_residual,
    qk_norm_rope,
    rms_norm_rope,
    set_backend,
)

__all__ = [
    "adaln_modulate",
    "backend",
    "bank_attention",
    "bank_gather_rope",
    "bank_write",
    "gated_residual",
    "qk_norm_rope",
    "rms_norm_rope",
    "set_backend",
]
