"""Microbenchmarks of the Triton kernels against their PyTorch references and against
`torch.nn.functional.scaled_dot_product_attention`, on the r1-480p shapes.

    python benchmarks/bench_kernels.py                 # CUDA, bf16, r1-480p shapes
    python benchmarks/bench_kernels.py --dtype float16 --json out.json
    python benchmarks/bench_kernels.py --shapes tiny   # tiny shapes; CPU interpreter if no GPU (= --smoke)

Timing: on CUDA `triton.testing.do_bench` (warm-up runs first, L2 flushed between runs,
median ms); under the interpreter a wall-clock mean after one warm-up call, which says
nothing about GPU speed (--smoke only checks that everything runs and agrees).
Throughput: attention in TFLOP/s of useful work (4 * q * valid keys * head_dim per head:
masked slots are not counted, for any method), the memory-bound ops in GB/s of the bytes
they must move (each input read once, each output written once). Errors against the
reference: max |out - ref| and ||out - ref|| / ||ref||. `ceilings` in the JSON: this device's
copy bandwidth (bytes read + written) and bf16 (CPU: fp32) matrix rate on random data, the
roofs the kernel rates are read against.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass

import torch

if not torch.cuda.is_available():  # must precede the first @triton.jit, i.e. the import below
    os.environ.setdefault("TRITON_INTERPRET", "1")

import torch.nn.functional as F  # noqa: E402

from flowact_kernels import reference  # noqa: E402
from flowact_kernels import triton_ops as tri  # noqa: E402


@dataclass(frozen=True)
class Shapes:
    """One preset's hot-path shapes. Bank layout as stream/bank.py: [reference | long-term
    (L) | short-term (C) | current (C)] latent-frame slots of `tokens_per_latent` tokens;
    in steady state all but `current` are valid."""

    name: str
    width: int
    heads: int
    depth: int
    tokens_per_latent: int
    chunk_latents: int
    long_term: int
    cond_tokens: int  # audio + text tokens that join the chunk's queries

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def chunk_tokens(self) -> int:
        return self.chunk_latents * self.tokens_per_latent + self.cond_tokens

    @property
    def capacity(self) -> int:
        return (1 + self.long_term + 2 * self.chunk_latents) * self.tokens_per_latent

    @property
    def valid_tokens(self) -> int:
        return (1 + self.long_term + self.chunk_latents) * self.tokens_per_latent


def preset_shapes(name: str) -> Shapes:
    """Read the shapes from the preset YAML when flowact is importable; else r1-480p's."""
    try:
        from flowact.config import load_preset

        p = load_preset(name)
        return Shapes(
            p.name,
            p.model.width,
            p.model.heads,
            p.model.depth,
            p.tokens_per_latent,
            p.stream.chunk_latents,
            p.stream.long_term,
            p.stream.chunk_latents * p.audio.tokens_per_latent + p.text.tokens,
        )
    except Exception as exc:  # noqa: BLE001 - the benchmark must run from a bare kernels checkout
        if name != "r1-480p":
            raise
        print(f"(preset not loadable: {exc}; using built-in r1-480p shapes)", file=sys.stderr)
        return Shapes("r1-480p", 1536, 12, 24, 1560, 2, 4, 24)


SMOKE = Shapes("smoke", 128, 2, 2, 16, 2, 2, 7)  # head_dim 64, 71 queries, bank 112 slots


def bench(fn, iters: int) -> float:
    """Milliseconds per call."""
    if torch.cuda.is_available():
        import triton.testing

        return triton.testing.do_bench(fn, warmup=25, rep=max(iters, 1) * 10)
    fn()  # warm-up (interpreter: first call parses the kernel)
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - t) / iters * 1e3


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b||, in fp64: bf16 lands near 1e-3..1e-2, fp32 far under 1e-3; NaN never passes."""
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def ceilings(device: str, iters: int) -> dict:
    """The two roofs, measured here: a device-to-device copy (bytes read + written per second)
    and a square matrix product on random data (bf16 on CUDA, fp32 on CPU; small on CPU)."""
    cuda = device == "cuda"
    nbytes, n = (2 << 30, 8192) if cuda else (32 << 20, 512)
    dtype = torch.bfloat16 if cuda else torch.float32
    src = torch.empty(nbytes // 4, device=device, dtype=torch.float32).uniform_()
    dst = torch.empty_like(src)
    a, b = (torch.randn(n, n, device=device, dtype=torch.float32).to(dtype) for _ in range(2))
    t_copy = bench(lambda: dst.copy_(src), iters)
    t_mm = bench(lambda: a @ b, iters)
    return dict(
        copy_bytes=2 * nbytes,
        copy_ms=t_copy,
        copy_GB_s=2 * nbytes / (t_copy * 1e-3) / 1e9,
        matmul_n=n,
        matmul_dtype=str(dtype),
        matmul_ms=t_mm,
        matmul_TFLOP_s=2 * n**3 / (t_mm * 1e-3) / 1e12,
    )


def run(s: Shapes, dtype: torch.dtype, device: str, iters: int) -> list[dict]:
    g = torch.Generator(device=device).manual_seed(0)
    b, h, d, n, cap, w = 1, s.heads, s.head_dim, s.chunk_tokens, s.capacity, s.width

    def randn(*shape):
        return torch.randn(*shape, generator=g, device=device, dtype=torch.float32).to(dtype)

    rows: list[dict] = []

    def row(op, shape, t_kernel, t_ref, unit, amount, got, want, **extra):
        err = max_err(got, want)
        rate = amount / (t_kernel * 1e-3) / (1e12 if unit == "TFLOP/s" else 1e9)
        r = dict(
            op=op,
            shape=shape,
            kernel_ms=t_kernel,
            reference_ms=t_ref,
            speedup=t_ref / t_kernel,
            unit=unit,
            kernel_rate=rate,
            reference_rate=rate * t_kernel / t_ref,
            max_abs_err=err,
            rel_err=rel_err(got, want),
            **extra,
        )
        rows.append(r)
        more = "".join(f"  {k}={v:.3f}ms (x{v / t_kernel:.2f})" for k, v in extra.items())
        print(
            f"{op:18s} {shape:34s} kernel {t_kernel:8.3f} ms  ref {t_ref:8.3f} ms  "
            f"x{t_ref / t_kernel:5.2f}  {rate:8.1f} {unit}  err {err:.1e}{more}",
            flush=True,
        )

    # -- memory-bank attention: steady state (current region masked) ----------------------
    q, k, v = randn(b, h, n, d), randn(b, h, n, d), randn(b, h, n, d)
    k_bank, v_bank = randn(b, h, cap, d), randn(b, h, cap, d)
    valid = torch.zeros(b, cap, dtype=torch.bool, device=device)
    valid[:, : s.valid_tokens] = True
    out = tri.bank_attention(q, k, v, k_bank, v_bank, valid)
    ref = reference.bank_attention(q, k, v, k_bank, v_bank, valid)
    keys = torch.cat((k_bank[:, :, : s.valid_tokens], k), 2)  # SDPA's best case: valid keys,
    vals = torch.cat((v_bank[:, :, : s.valid_tokens], v), 2)  # concatenated beforehand, no mask
    flops = 4.0 * b * h * n * (s.valid_tokens + n) * d
    row(
        "bank_attention",
        f"q{n} bank{cap}({s.valid_tokens} valid) h{h} d{d}",
        bench(lambda: tri.bank_attention(q, k, v, k_bank, v_bank, valid), iters),
        bench(lambda: reference.bank_attention(q, k, v, k_bank, v_bank, valid), iters),
        "TFLOP/s",
        flops,
        out,
        ref,
        sdpa_valid_precat=bench(lambda: F.scaled_dot_product_attention(q, keys, vals), iters),
    )

    # -- QK-RMSNorm + RoPE on the chunk's queries ---------------------------------------
    weight = torch.rand(d, generator=g, device=device) + 0.5
    angle = torch.rand(n, d // 2, generator=g, device=device) * 6.0
    cos, sin = angle.cos(), angle.sin()
    x = randn(b, n, 3, h, d)[:, :, 0].transpose(1, 2)  # q as the model sees it: a view of fused qkv
    nbytes = 2 * x.numel() * x.element_size() + 2 * cos.numel() * 4
    row(
        "rms_norm_rope",
        f"(1,{h},{n},{d}) strided",
        bench(lambda: tri.rms_norm_rope(x, weight, cos, sin), iters),
        bench(lambda: reference.rms_norm_rope(x, weight, cos, sin), iters),
        "GB/s",
        nbytes,
        tri.rms_norm_rope(x, weight, cos, sin),
        reference.rms_norm_rope(x, weight, cos, sin),
    )

    # -- bank write: a chunk's video keys/values into the `current` region -----------------
    nv = s.chunk_latents * s.tokens_per_latent
    start = (1 + s.long_term + s.chunk_latents) * s.tokens_per_latent
    kw, vw = randn(b, h, nv, d), randn(b, h, nv, d)
    cw, sw = cos[:1].expand(nv, -1).contiguous(), sin[:1].expand(nv, -1).contiguous()
    kb2, vb2 = k_bank.clone(), v_bank.clone()
    tri.bank_write(kw, vw, weight, cw, sw, k_bank, v_bank, start)
    reference.bank_write(kw, vw, weight, cw, sw, kb2, vb2, start)
    got, want = torch.cat((k_bank, v_bank)), torch.cat((kb2, vb2))  # before the timed calls write again
    del kb2, vb2
    nbytes = 4 * kw.numel() * kw.element_size() + 2 * cw.numel() * 4
    row(
        "bank_write",
        f"(1,{h},{nv},{d}) -> slot {start}",
        bench(lambda: tri.bank_write(kw, vw, weight, cw, sw, k_bank, v_bank, start), iters),
        bench(lambda: reference.bank_write(kw, vw, weight, cw, sw, k_bank, v_bank, start), iters),
        "GB/s",
        nbytes,
        got,
        want,
    )

    # -- bank gather: long-term shift by one frame, all layers at once (stream/bank.py) ---
    depth = s.depth if device == "cuda" else 1
    kd, vd = randn(depth * b, h, cap, d), randn(depth * b, h, cap, d)
    nm = (s.long_term - 1) * s.tokens_per_latent
    src = torch.arange(2 * s.tokens_per_latent, 2 * s.tokens_per_latent + nm, device=device)
    dst = src - s.tokens_per_latent
    cg, sg = cos[:1].expand(nm, -1).contiguous(), sin[:1].expand(nm, -1).contiguous()
    kd2, vd2 = kd.clone(), vd.clone()
    tri.bank_gather_rope(kd, vd, src, dst, cg, sg)
    reference.bank_gather_rope(kd2, vd2, src, dst, cg, sg)
    # compared before the timed calls: they shift the slots again (source and destination overlap
    # where long_term > 2), so afterwards the bank no longer matches one reference call
    got, want = torch.cat((kd, vd)), torch.cat((kd2, vd2))
    del kd2, vd2
    nbytes = 4 * depth * b * h * nm * d * kd.element_size()
    row(
        "bank_gather_rope",
        f"({depth * b},{h},{cap},{d}) move {nm} slots",
        bench(lambda: tri.bank_gather_rope(kd, vd, src, dst, cg, sg), iters),
        bench(lambda: reference.bank_gather_rope(kd, vd, src, dst, cg, sg), iters),
        "GB/s",
        nbytes,
        got,
        want,
    )

    # -- AdaLN modulate and gated residual on the chunk's tokens --------------------------
    xa, ya = randn(b, n, w), randn(b, n, w)
    shift, scale, gate = randn(b, w), randn(b, w), randn(b, w)
    nbytes = 2 * xa.numel() * xa.element_size()
    row(
        "adaln_modulate",
        f"({b},{n},{w})",
        bench(lambda: tri.adaln_modulate(xa, shift, scale), iters),
        bench(lambda: reference.adaln_modulate(xa, shift, scale), iters),
        "GB/s",
        nbytes,
        tri.adaln_modulate(xa, shift, scale),
        reference.adaln_modulate(xa, shift, scale),
    )
    nbytes = 3 * xa.numel() * xa.element_size()
    row(
        "gated_residual",
        f"({b},{n},{w})",
        bench(lambda: tri.gated_residual(xa, ya, gate), iters),
        bench(lambda: reference.gated_residual(xa, ya, gate), iters),
        "GB/s",
        nbytes,
        tri.gated_residual(xa, ya, gate),
        reference.gated_residual(xa, ya, gate),
    )
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--shapes",
        "--preset",
        dest="shapes",
        default="r1-480p",
        help="'tiny' (runs under the CPU interpreter), or the preset whose shapes to use (default r1-480p)",
    )
    ap.add_argument(
        "--dtype",
        default=None,
        choices=["bfloat16", "float16", "float32"],
        help="default: bfloat16 on CUDA, float32 under the interpreter",
    )
    ap.add_argument("--smoke", action="store_true", help="the same as --shapes tiny")
    ap.add_argument("--iters", type=int, default=None, help="timed calls per op (CUDA: do_bench rep ~ 10x this ms)")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = ap.parse_args(argv)

    cuda = torch.cuda.is_available()
    tiny = args.smoke or args.shapes == "tiny"
    if not cuda and not tiny:
        ap.error("no CUDA device: full-size shapes would take hours in the interpreter; use --shapes tiny")
    device = "cuda" if cuda else "cpu"
    dtype = getattr(torch, args.dtype or ("bfloat16" if cuda else "float32"))
    shapes = SMOKE if tiny else preset_shapes(args.shapes)
    iters = args.iters or (20 if cuda else 2)

    import triton

    where = torch.cuda.get_device_name() if cuda else "CPU, Triton interpreter (timings meaningless)"
    print(
        f"device: {where} | torch {torch.__version__} | triton {triton.__version__} | dtype {dtype} | "
        f"shapes {shapes.name} (width {shapes.width}, heads {shapes.heads}, head_dim {shapes.head_dim}) | "
        + ("do_bench: 25 ms warm-up, median" if cuda else f"1 warm-up call, mean of {iters}")
    )
    print(
        "speedup x = reference ms / kernel ms; attention also against SDPA on the valid keys, "
        "pre-concatenated and unmasked (x = sdpa ms / kernel ms)"
    )
    rows = run(shapes, dtype, device, iters)
    roof = ceilings(device, iters)
    print(
        f"ceilings: copy {roof['copy_GB_s']:.4g} GB/s (read + write), {roof['matmul_dtype']} matmul "
        f"{roof['matmul_n']}^3 {roof['matmul_TFLOP_s']:.4g} TFLOP/s"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                dict(
                    device=where,
                    dtype=str(dtype),
                    shapes=shapes.name,
                    shape_info=dataclasses.asdict(shapes),
                    torch=torch.__version__,
                    triton=triton.__version__,
                    timing="do_bench median" if cuda else f"wall-clock mean of {iters} (interpreter)",
                    rows=rows,
                    ceilings=roof,
                ),
                f,
                indent=1,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
