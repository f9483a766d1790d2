"""The CPU dtype follows the CPU: a preset's bfloat16 runs in bf16 only where the CPU computes it
natively (emulated bf16 is 50-130x slower than fp32), float32 elsewhere; the variables that
emulate an older CPU count; --dtype overrides; the reason is in the conditions line."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch

from flowact import precision
from flowact.config import load_preset
from flowact.routes import load_route
from helpers import TINY, make_inputs, run_cli

FLOOR_VARS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS")


@pytest.fixture
def detect(monkeypatch):
    """A fresh detection with no floor variables set; returns a setter for the CPU's flags."""
    for var in FLOOR_VARS:
        monkeypatch.delenv(var, raising=False)
    precision.native_bf16.cache_clear()

    def set_flags(flags):
        monkeypatch.setattr(precision, "cpu_flags", lambda *a: flags)
        precision.native_bf16.cache_clear()

    yield set_flags
    precision.native_bf16.cache_clear()


def _bf16_preset():
    p = load_preset(TINY)
    return dataclasses.replace(p, dtype={"cpu": "bfloat16", "cuda": "bfloat16"})


@pytest.mark.parametrize(
    "flags,dtype,why",
    [
        ({"fpu", "avx2", "avx512f", "avx512_bf16"}, torch.bfloat16, "bfloat16 (auto: native bf16)"),
        ({"fpu", "avx2", "amx_bf16", "amx_tile"}, torch.bfloat16, "bfloat16 (auto: native bf16)"),
        ({"fpu", "avx2", "avx512f", "avx512_vnni"}, torch.float32, "float32 (auto: this CPU has no native bf16)"),
    ],
)
def test_cpu_bf16_only_where_native(detect, flags, dtype, why):
    detect(flags)
    e = load_route(_bf16_preset(), device="cpu", random_weights=True)
    assert e.dtype == dtype and next(e.model.parameters()).dtype == dtype
    assert why in e.conditions()


def test_dtype_flag_overrides_the_check(detect):
    detect({"avx2"})  # no native bf16: auto would pick float32
    e = load_route(_bf16_preset(), device="cpu", random_weights=True, dtype="bfloat16")
    assert e.dtype == torch.bfloat16 and "bfloat16 (--dtype)" in e.conditions()
    detect({"avx512_bf16"})
    e = load_route(_bf16_preset(), device="cpu", random_weights=True, dtype="float32")
    assert e.dtype == torch.float32 and "float32 (--dtype)" in e.conditions()
    # a preset that asks for float32 keeps it, whatever the CPU
    assert "float32 (preset)" in load_route(TINY, device="cpu", random_weights=True).conditions()


@pytest.mark.parametrize(
    "var,value,capped",
    [
        ("ONEDNN_MAX_CPU_ISA", "AVX2", True),
        ("ONEDNN_MAX_CPU_ISA", "avx512_core", True),
        ("ONEDNN_MAX_CPU_ISA", "SSE41", True),
        ("ONEDNN_MAX_CPU_ISA", "AVX", True),
        ("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_VNNI", True),
        ("DNNL_MAX_CPU_ISA", "AVX2", True),
        ("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16", False),
        ("ONEDNN_MAX_CPU_ISA", "ALL", False),
        ("ATEN_CPU_CAPABILITY", "avx2", True),
        ("ATEN_CPU_CAPABILITY", "default", True),
        ("ATEN_CPU_CAPABILITY", "avx512", False),
        ("MKL_ENABLE_INSTRUCTIONS", "AVX2", True),
        ("MKL_ENABLE_INSTRUCTIONS", "AVX512", False),
    ],
)
def test_emulated_floor_variables_count(detect, monkeypatch, var, value, capped):
    detect({"avx512f", "avx512_bf16", "amx_bf16"})  # the hardware has it ...
    monkeypatch.setenv(var, value)  # ... but the process is told to behave like an older CPU
    native, why = precision.native_bf16()
    assert native is not capped
    if capped:
        assert f"{var}={value}" in why
        e = load_route(_bf16_preset(), device="cpu", random_weights=True)
        assert e.dtype == torch.float32 and f"float32 (auto: {var}={value} caps" in e.conditions()


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16\n\nprocessor\t: 1\nflags\t: fpu\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd evtstrm aes sve bf16 i8mm\nCPU implementer\t: 0x41\n")
    bare = tmp_path / "bare"
    bare.write_text("processor\t: 0\nmodel name\t: something\n")
    assert {"avx512_bf16", "avx2"} <= precision.cpu_flags(x86)
    assert "bf16" in precision.cpu_flags(arm)
    assert precision.cpu_flags(bare) is None and precision.cpu_flags(tmp_path / "missing") is None


def test_no_flags_falls_back_to_a_short_timing_probe(detect, monkeypatch):
    detect(None)
    calls = []
    monkeypatch.setattr(precision, "probe_bf16_native", lambda: calls.append(1) or False)
    assert precision.native_bf16() == (False, "bf16 timed much slower than fp32")
    precision.native_bf16()  # decided once: cached
    assert calls == [1]


def _child(env: dict) -> dict:
    code = (
        "import json, time, torch; from flowact import precision as P; t = time.perf_counter(); "
        "probe = P.probe_bf16_native(); dt = time.perf_counter() - t; "
        "print(json.dumps({'native': P.native_bf16(), 'probe': probe, 'probe_s': dt, 'flags': "
        "sorted(P.cpu_flags() or [])}))"
    )
    clean = {k: v for k, v in os.environ.items() if k not in FLOOR_VARS}
    proc = subprocess.run(
        [sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_this_machine_and_its_emulated_floor():
    """The real detection in fresh processes: as the flags say on this CPU; with the floor's
    variables (as used to emulate a CPU without bf16) float32, and the timing probe agrees."""
    here = _child({})
    has = bool(set(here["flags"]) & {"avx512_bf16", "amx_bf16", "bf16"})
    assert here["native"][0] is has
    floor = _child({"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"})
    assert floor["native"][0] is False and "caps the CPU" in floor["native"][1]
    if sys.platform == "linux" and os.uname().machine == "x86_64":
        assert floor["probe"] is False  # emulated bf16 times many times slower
        if has:
            assert here["probe"] is True
    # bounded (a probe must never stall a start), not a speed target: it measured a few ms alone
    # and 0.2 s on a loaded 2-core machine
    assert here["probe_s"] < 2.0 and floor["probe_s"] < 2.0, (here["probe_s"], floor["probe_s"])


def test_render_json_says_how_the_dtype_was_chosen(tmp_path):
    img, wav = make_inputs(tmp_path, seconds=0.4)
    code, out, err = run_cli(
        [
            "render",
            "-i",
            str(img),
            "-a",
            str(wav),
            "--out",
            str(tmp_path / "o.mp4"),
            "--preset",
            TINY,
            "--dtype",
            "bfloat16",
            "--json",
        ]
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["dtype"] == "bfloat16" and "bfloat16 (--dtype)" in report["conditions"]
