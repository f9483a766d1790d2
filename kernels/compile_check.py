"""Compile every kernel for real GPUs (sm_90 H100, sm_80 A100) on a machine without one.

The interpreter runs the kernels' Python, not Triton's compiler: type or layout errors
that only the GPU path hits, or attention loads that stop being software-pipelined,
would pass the CPU tests. This compiles to PTX and cubin with the ptxas bundled in the
Triton wheel, with the specialisations a real launch gets (unit inner strides,
16-aligned pointers and strides), and reports shared memory and async-copy/MMA counts.

    python -m flowact_kernels.compile_check            # all dtypes, head dims, configs
    python -m flowact_kernels.compile_check --quick    # bf16 only, the main configs

Must run with TRITON_INTERPRET unset (the kernels must be JIT functions, not interpreted).
"""

from __future__ import annotations

import argparse
import os
import re
import sys


def _source(fn, ptr_types: dict, consts: dict, ones: list, aligned: list, floats=("qk_scale", "eps")):
    from triton.compiler import ASTSource

    consts = {**consts, **{n: 1 for n in ones}}  # what Triton does for int args equal to 1
    sig = {}
    for name in fn.arg_names:
        if name in consts:
            sig[name] = "constexpr"
        elif name in ptr_types:
            sig[name] = ptr_types[name]
        else:
            sig[name] = "fp32" if name in floats else "i32"
    attrs = {(fn.arg_names.index(n),): [["tt.divisibility", 16]] for n in aligned if n in fn.arg_names}
    return ASTSource(fn, sig, constexprs=consts, attrs=attrs)


def _compile(src, arch: int, num_warps: int, num_stages: int):
    import triton
    from triton.backends.compiler import GPUTarget

    k = triton.compile(
        src, target=GPUTarget("cuda", arch, 32), options=dict(num_warps=num_warps, num_stages=num_stages)
    )
    ptx = k.asm["ptx"]
    return dict(
        shared=k.metadata.shared,
        cp_async=len(re.findall(r"cp\.async\.(?:cg|ca)", ptx)),
        mma=len(re.findall(r"\b(?:wgmma\.mma_async|mma\.sync)", ptx)),
    )


def attention(arch: int, dtype: str, head_dim: int, block_m: int, block_n: int, warps: int, stages: int) -> dict:
    from .attention_triton import _bank_attention_fwd as fn

    ptrs = {n: f"*{dtype}" for n in ("Q", "K", "V", "KB", "VB", "OUT")} | {"VALID": "*u8"}
    ones = ["sq_d", "sk_d", "sv_d", "skb_d", "svb_d", "sm_t", "so_d"]
    aligned = [*ptrs, *(n for n in fn.arg_names if n.startswith("s") and n not in ones), "CAP", "N_Q", "N_K"]
    consts = dict(
        HEAD_DIM=head_dim,
        BLOCK_D=head_dim,
        BLOCK_M=block_m,
        BLOCK_N=block_n,
        UPCAST=False,
        PRECISION="ieee" if dtype == "fp32" else "tf32",
    )
    return _compile(_source(fn, ptrs, consts, ones, aligned), arch, warps, stages)


def rope_family(arch: int, dtype: str, head_dim: int) -> dict:
    from .rope_triton import _norm_rope_rows as fn

    ptrs = {n: f"*{dtype}" for n in ("X", "V", "OUT", "VOUT")} | dict(
        W="*fp32", COS="*fp32", SIN="*fp32", SRC="*i64", DST="*i64"
    )
    ones = ["sx_d", "sv_d", "so_d", "svo_d", "sc_d", "ss_d"]
    aligned = [*ptrs, *(n for n in fn.arg_names if n.startswith("s") and n not in ones)]
    half = head_dim // 2
    out = {}
    for flags in (
        (1, 1, 0, 0, 0),
        (1, 1, 1, 0, 0),
        (0, 1, 1, 1, 0),
        (0, 0, 1, 0, 1),
    ):  # norm_rope, write, gather, scatter
        consts = dict(
            HALF=half,
            BLOCK_HALF=half,
            BLOCK_T=4096 // half,
            **dict(zip(("NORM", "ROTATE", "HAS_V", "GATHER", "SCATTER"), map(bool, flags))),
        )
        out = _compile(_source(fn, ptrs, consts, ones, aligned), arch, 8, 1)
    return out


def adaln(arch: int, dtype: str, width: int) -> dict:
    from .adaln_triton import _adaln_modulate_rows, _gated_residual_rows

    ptrs = {n: f"*{dtype}" for n in ("X", "Y", "SHIFT", "SCALE", "GATE", "OUT")}
    block_w = 1 << (width - 1).bit_length()
    for fn, consts, warps in (
        (_adaln_modulate_rows, dict(BLOCK_T=max(1, 4096 // block_w), BLOCK_W=block_w), 8),
        (_gated_residual_rows, dict(BLOCK_T=4, BLOCK_W=1024), 4),
    ):
        ones = [n for n in fn.arg_names if n.endswith("_w")]
        aligned = [*ptrs, *(n for n in fn.arg_names if n.startswith("s") and n not in ones), "W"]
        out = _compile(_source(fn, ptrs, consts, ones, aligned), arch, warps, 1)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="compile the Triton kernels for sm_90/sm_80 without a GPU")
    ap.add_argument("--quick", action="store_true", help="bf16, sm_90, the main attention configs only")
    args = ap.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        print("compile_check: unset TRITON_INTERPRET (the kernels must be JIT functions)", file=sys.stderr)
        return 2
    from .attention_triton import _configs

    archs = (90,) if args.quick else (90, 80)
    dtypes = ("bf16",) if args.quick else ("bf16", "fp16", "fp32")
    configs = [(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.num_warps, c.num_stages) for c in _configs()]
    if args.quick:
        configs = configs[:2]
    problems = 0
    for arch in archs:
        for dt in dtypes:
            for d in (64, 128):
                for cfg in configs:
                    r = attention(arch, dt, d, *cfg)
                    # half-precision tiles must stream through async copies into tensor-core MMAs
                    ok = dt == "fp32" or (r["cp_async"] > 0 and r["mma"] > 0)
                    problems += not ok
                    print(
                        f"sm_{arch} bank_attention {dt} d{d} {cfg}: shared {r['shared']} B, "
                        f"cp.async {r['cp_async']}, mma {r['mma']}{'' if ok else '  <-- not pipelined'}"
                    )
                print(
                    f"sm_{arch} norm/rope/bank-write/gather {dt} d{d}: "
                    f"ok (shared {rope_family(arch, dt, d)['shared']} B)"
                )
            print(f"sm_{arch} adaln/gated_residual {dt} width 1536: ok (shared {adaln(arch, dt, 1536)['shared']} B)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
