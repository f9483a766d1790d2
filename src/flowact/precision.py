"""The float type a model runs in: the preset's, except that bfloat16 on a CPU that only
emulates it becomes float32.

Without avx512_bf16 / amx_bf16 (x86) or the `bf16` feature (Arm) oneDNN and ATen compute
bf16 by converting through fp32: measured 50-130x slower than fp32 there, so a preset that
is real time in bf16 on one CPU would crawl on another. Whether bf16 is native is read once
per process from the CPU's flags, lowered by the variables that emulate an older CPU
(ONEDNN_MAX_CPU_ISA, ATEN_CPU_CAPABILITY, MKL_ENABLE_INSTRUCTIONS), and timed only when no
flags can be read.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass
from pathlib import Path

# oneDNN ISA caps at or above the first with native bf16 dot products (AVX512_CORE_BF16);
# any other value (SSE41, AVX, AVX2, AVX2_VNNI[_2], AVX512_CORE[_VNNI], or one we do not
# know) caps the CPU below it
_ONEDNN_BF16_ISAS = {
    "AVX512_CORE_BF16",
    "AVX512_CORE_FP16",
    "AVX512_CORE_AMX",
    "AVX512_CORE_AMX_FP16",
    "AVX10_1_512",
    "AVX10_1_512_AMX",
    "AVX10_1_512_AMX_FP16",
    "AVX10_2_512",
    "AVX10_2_512_AMX_2",
    "ALL",
    "DEFAULT",
}
_ATEN_FLOORS = {"DEFAULT", "AVX2"}
_MKL_FLOORS = {"SSE4_2", "AVX", "AVX2"}
_NATIVE_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}  # x86 `flags`; Arm `Features` says bf16


@dataclass(frozen=True)
class DtypeChoice:
    name: str  # float32 | bfloat16 | float16
    why: str  # "--dtype", "preset", or "auto: ..." when the preset's bf16 was checked against the CPU

    def describe(self) -> str:
        return f"{self.name} ({self.why})"


def emulated_floor(environ=os.environ) -> str | None:
    """The variable (as NAME=VALUE) that caps this process below native bf16, if one does."""
    for var in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        value = environ.get(var, "").strip()
        if value and value.upper() not in _ONEDNN_BF16_ISAS:
            return f"{var}={value}"
    value = environ.get("ATEN_CPU_CAPABILITY", "").strip()
    if value.upper() in _ATEN_FLOORS:
        return f"ATEN_CPU_CAPABILITY={value}"
    value = environ.get("MKL_ENABLE_INSTRUCTIONS", "").strip()
    if value.upper() in _MKL_FLOORS:
        return f"MKL_ENABLE_INSTRUCTIONS={value}"
    return None


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str] | None:
    """The CPU's feature flags (x86 `flags`, Arm `Features`), or None where they cannot be read."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return None
    flags: set[str] = set()
    seen = False
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            seen = True
            flags.update(value.split())
    return flags if seen else None


def probe_bf16_native(size: int = 128) -> bool:
    """Time bf16 against fp32 matmuls, one thread, best of ten after a warm-up (a few ms):
    native bf16 is about as fast as fp32 or faster, emulated bf16 ~20x slower. One thread:
    on a busy machine a multi-thread team stalls at its barriers and the times say nothing.
    Best of ten after three warm-up calls: on a loaded 2-core Xeon with AMX, best of three
    after one call once read native bf16 at over 2x fp32 (alone it reads 1.1-1.4x)."""
    import torch

    def best(dtype) -> float:
        a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
        for _ in range(3):  # the first calls build the kernel (and, with AMX, set up its tiles)
            a @ b
        times = []
        for _ in range(10):
            t0 = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t0)
        return min(times)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return best(torch.bfloat16) < 2.0 * best(torch.float32)
    finally:
        torch.set_num_threads(threads)


@functools.cache
def native_bf16() -> tuple[bool, str]:
    """(does this CPU compute bf16 natively, why we think so); decided once per process."""
    floor = emulated_floor()
    if floor is not None:
        return False, f"{floor} caps the CPU below native bf16"
    flags = cpu_flags()
    if flags is not None:
        if flags & _NATIVE_FLAGS:
            return True, "native bf16"
        return False, "this CPU has no native bf16"
    if probe_bf16_native():
        return True, "bf16 timed as fast as fp32"
    return False, "bf16 timed much slower than fp32"


def choose_dtype(requested: str | None, preset_dtypes: dict, device_type: str) -> DtypeChoice:
    """`--dtype` if given; else the preset's for the device, with a CPU's bf16 kept only where native."""
    if requested:
        return DtypeChoice(requested, "--dtype")
    name = preset_dtypes.get(device_type, "float32")
    if device_type == "cpu" and name == "bfloat16":
        native, why = native_bf16()
        return DtypeChoice("bfloat16" if native else "float32", f"auto: {why}")
    return DtypeChoice(name, "preset")
