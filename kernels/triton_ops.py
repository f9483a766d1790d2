"""The Triton kernels, under the same names and signatures as `reference` (dispatch calls
`triton_ops.<name>(...)` where it would call `reference.<name>(...)`).

Each lives beside the others of its kind: attention in `attention_triton`, QK-norm/RoPE
and the bank's writes and moves in `rope_triton`, AdaLN and the gated residual in
`adaln_triton`. Importing this module fails when Triton is missing; dispatch then falls
back to the references.
"""

from __future__ import annotations

from .adaln_triton import adaln_modulate, gated_residual
from .attention_triton import bank_attention
from .rope_triton import bank_gather_rope, bank_write, rms_norm_rope
from .triton_env import INTERPRET

__all__ = [
    "INTERPRET",
    "adaln_modulate",
    "bank_attention",
    "bank_gather_rope",
    "bank_write",
    "gated_residual",
    "rms_norm_rope",
]
