"""scripts/gpu_bench.sh, the one prepared GPU run, end to end on CPU with the tiny preset: every
step writes its JSON with the figures docs/gpu-run.md reads, the summary says all ok, and a
step that fails or times out is recorded while the next one still runs. The GPU's minutes
must never go to a typo in the script."""

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from helpers import TINY

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_bench.sh"
STAGES = ["vae", "cache", "pretrain", "decoder", "selfforce", "distill", "lips", "visemes"]
KERNEL_OPS = {"bank_attention", "rms_norm_rope", "bank_write", "bank_gather_rope", "adaln_modulate", "gated_residual"}


def _run(tmp_path, **env):
    doc = yaml.safe_load(Path(TINY).read_text())
    doc["lips"] = {"width": 8, "ear_width": 16}  # the lips and visemes stages need a lip refiner
    preset = tmp_path / "tiny-lips.yaml"
    preset.write_text(yaml.safe_dump(doc))
    (tmp_path / "nocarry").mkdir(exist_ok=True)
    settings = dict(
        DEVICE="cpu",
        PRESET=TINY,
        TRAIN_PRESET=str(preset),
        BENCH_SECONDS="1",
        FLAT_SECONDS="3",
        FLAT_WINDOW="1",
        TRAIN_STEPS="2",
        TRAIN_BATCH="1",
        CACHE_CLIPS="2",
        CACHE_SECONDS="2",
        THREADS="1",
        OUT=str(tmp_path / "out"),
        CARRY=str(tmp_path / "nocarry"),
        PYTHON=sys.executable,
    )
    settings.update(env)
    full = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "FLOWACT_KERNELS")}
    proc = subprocess.run(
        ["bash", str(SCRIPT)], env={**full, **settings}, capture_output=True, text=True, timeout=240, cwd=tmp_path
    )
    return proc, tmp_path / "out"


def test_the_whole_run_on_cpu_writes_every_steps_json(tmp_path):
    proc, out = _run(tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    names = [
        "env.json",
        "kernels.json",
        "bench_triton.json",
        "bench_reference.json",
        "flat.json",
        "train.json",
        "summary.json",
        "log.txt",
    ]
    assert sorted(p.name for p in out.iterdir()) == sorted(names)  # $OUT brings back 8 files at most

    summary = json.loads((out / "summary.json").read_text())
    assert summary["all_ok"], json.dumps(summary, indent=1)[-3000:]
    assert [s["name"] for s in summary["steps"]] == [
        "setup",
        "env",
        "kernels",
        "bench_triton",
        "bench_reference",
        "flat",
        "train",
    ]
    assert all(s["ok"] and s["rc"] == 0 and s["headline"] is not None for s in summary["steps"][1:])
    assert summary["timeouts_sum_s"] < 9 * 60  # the GPU run fits one command with room left
    assert "all steps ok" in proc.stdout

    env = json.loads((out / "env.json").read_text())
    assert env["cuda_available"] is False and env["gpu_name"] is None and env["torch"] and env["triton"]
    assert env["triton_kernels"] == "import ok" and env["espeak_ng"] == "ok" and "ffmpeg version" in env["ffmpeg"]
    assert env["flowact"].startswith(str(ROOT / "src"))  # the checkout's code, as on the GPU machine

    kernels = json.loads((out / "kernels.json").read_text())
    assert {r["op"] for r in kernels["rows"]} == KERNEL_OPS and kernels["shapes"] == "smoke"
    for r in kernels["rows"]:
        assert r["kernel_ms"] > 0 and r["reference_ms"] > 0 and r["speedup"] > 0, r
        assert r["rel_err"] < 1e-4, r  # fp32 under the interpreter: the kernels agree with the references
    assert kernels["rows"][0]["sdpa_valid_precat"] > 0
    assert kernels["ceilings"]["copy_GB_s"] > 0 and kernels["ceilings"]["matmul_TFLOP_s"] > 0

    for name, backend in (("bench_triton", "auto"), ("bench_reference", "reference")):
        b = json.loads((out / f"{name}.json").read_text())
        assert b["preset"] == "tiny" and b["video_seconds"] == 1.0 and b["realtime_factor"] > 0, b
        assert b["ttff_seconds"] > 0 and b["e2e_fps"] > 0 and b["generator_fps"] > 0
        assert set(b["chunk_latency_ms"]) >= {"p50", "p95", "max", "first_half_median", "second_half_median"}
        assert f"kernels {backend}" in b["conditions"], b["conditions"]

    flat = json.loads((out / "flat.json").read_text())
    assert flat["video_seconds"] == 3.0 and not flat["stopped_by_budget"]
    assert len(flat["chunk_ms"]) == flat["chunk_latency_ms"]["chunks"] == 10  # 3 s in 0.32 s chunks
    for window in ("first_window", "last_window"):
        assert flat[window]["chunks"] >= 3 and flat[window]["p99"] >= flat[window]["p50"] > 0
    assert flat["last_over_first_p50"] > 0 and flat["memory_mb"]["end"] > 0

    train = json.loads((out / "train.json").read_text())
    assert [s["stage"] for s in train["stages"]] == STAGES
    assert all(s["ok"] for s in train["stages"]), train
    for s in train["stages"]:
        if s["stage"] == "cache":
            assert s["clips"] == 2 and s["clips_per_s"] > 0
        else:
            assert s["steps_done"] == 2 and s["compute_steps_per_s"] > 0 and s["batch"] == 1, s
    by = {s["stage"]: s for s in train["stages"]}
    assert by["pretrain"]["data"] == by["distill"]["data"] == "cache"  # as the recipe: from the latent cache
    assert by["distill"]["init"] == "selfforce.safetensors" and by["visemes"]["init"] == "lips.safetensors"


def test_a_failing_and_a_timed_out_step_are_recorded_and_the_run_goes_on(tmp_path):
    proc, out = _run(tmp_path, ONLY="kernels flat", KERNEL_SHAPES="r1-480p", FLAT_SECONDS="60", T_FLAT="2")
    assert proc.returncode == 1
    summary = json.loads((out / "summary.json").read_text())
    steps = {s["name"]: s for s in summary["steps"]}
    assert list(steps) == ["setup", "kernels", "flat"] and not summary["all_ok"]
    assert steps["setup"]["ok"]
    assert steps["kernels"]["rc"] not in (0, 124) and not steps["kernels"]["ok"]
    assert any("no CUDA device" in line for line in steps["kernels"]["log_tail"])  # full shapes on CPU
    assert steps["flat"]["rc"] == 124 and not steps["flat"]["ok"] and steps["flat"]["seconds"] < 10
    assert "SOME STEPS FAILED" in proc.stdout
