"""Data-parallel training (train/distributed.py) on 2 gloo ranks on the CPU, started by torchrun:
the same losses as one process with the same global batch, step by step, for a stage whose loss
is a weighted mean over pixels (vae with motion and mouth weights, on the synthetic world), one
whose loss is a mean over the noisy frames only (pretrain, on a latent cache) and a motion
engine's stage (the one loop trains it too); an exact resume on the same ranks; a 2-rank
checkpoint resumed on 1 rank; rank 0 alone writes; `torchrun -m flowact train` trains
data-parallel."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from distributed_ranks import training_run
from flowact.train.loop import train
from helpers import TINY, run_cli

HERE = Path(__file__).parent
# step 1 starts from the same weights on the same clips and noise: only the order of the sums
# differs. Later steps add Adam's response to gradients that differ in their last bits.
FIRST_STEP_RTOL, RTOL = 1e-5, 1e-4


def torchrun(args: list[str], timeout: float = 300, env: dict | None = None) -> str:
    """`torchrun --standalone --nproc-per-node 2 ARGS` (a free port of its own); its output. Killed
    with its ranks if it outlives `timeout`."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd += ["--monitor-interval", "0.1", *args]  # the agent's default polling adds seconds
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"torchrun ran past {timeout} s:\n{out[-3000:]}")
    assert proc.returncode == 0, out[-4000:]
    return out


def log(folder: Path, stage: str) -> list[dict]:
    return [json.loads(line) for line in (folder / stage / "log.jsonl").read_text().splitlines()]


def rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The 2-rank runs (distributed_ranks.py) and the same runs in one process with a batch of 2."""
    import torch

    from flowact.config import load_preset
    from flowact.model import FlowActModel
    from flowact.train.cache import build_cache

    root = tmp_path_factory.mktemp("ddp")
    model = FlowActModel(load_preset(TINY))
    model.init_random(0)
    with torch.no_grad():
        build_cache(model.eval(), root / "cache", clips=2, seconds=1.2, seed=0)
    torchrun([str(HERE / "distributed_ranks.py"), str(root), str(root / "cache")])
    for stage in ("vae", "pretrain"):
        train(training_run(stage, root / "one", root / "cache", batch=2))
    return root


@pytest.mark.parametrize("stage", ["vae", "pretrain"])
def test_two_ranks_give_the_losses_of_one_process_with_the_same_global_batch(runs, stage):
    two, one = log(runs / "two", stage), log(runs / "one", stage)
    assert [r["step"] for r in two] == list(range(1, len(one) + 1))  # one line per step: rank 0 alone writes
    assert all(r["world"] == 2 and r["batch"] == 2 for r in two)
    assert all(r["world"] == 1 and r["batch"] == 2 for r in one)
    assert rel(two[0]["loss"], one[0]["loss"]) < FIRST_STEP_RTOL, (two[0], one[0])
    diffs = [rel(a["loss"], b["loss"]) for a, b in zip(two, one)]
    assert max(diffs) < RTOL, diffs
    assert two[-1]["loss"] != two[0]["loss"]  # the weights moved: the later steps compare trained models
    assert (runs / "two" / f"{stage}.safetensors").is_file()


def test_resume_on_the_same_ranks_is_exact(runs):
    straight, resumed = log(runs / "two", "pretrain"), log(runs / "stopped", "pretrain")
    assert [r["step"] for r in resumed] == [1, 2, 3, 4]
    assert [r["loss"] for r in resumed] == [r["loss"] for r in straight]


def test_a_two_rank_checkpoint_resumes_on_one_rank(runs):
    state = json.loads((runs / "handover" / "pretrain" / "ckpt" / "state.json").read_text())
    assert state["step"] == 2 and state["extra"]["world"] == 2 and state["extra"]["batch"] == 2
    summary = train(replace(training_run("pretrain", runs / "handover", runs / "cache", batch=2), resume=True))
    assert summary["resumed_from"] == 2 and summary["world"] == 1
    after = log(runs / "handover", "pretrain")
    one, two = log(runs / "one", "pretrain"), log(runs / "two", "pretrain")
    assert [(r["step"], r["world"], r["batch"]) for r in after] == [(1, 2, 2), (2, 2, 2), (3, 1, 2), (4, 1, 2)]
    for ref in (one, two):
        diffs = [rel(a["loss"], b["loss"]) for a, b in zip(after[2:], ref[2:])]
        assert max(diffs) < RTOL, diffs


def test_torchrun_runs_the_cli(runs, tmp_path):
    """`torchrun -m flowact train` trains data-parallel without --distributed; one summary line."""
    cache = runs / "cache"
    args = ["-m", "flowact", "train", "--stage", "pretrain", "--preset", TINY, "--data", str(cache)]
    args += ["--init", str(cache / "init.safetensors"), "--steps", "1", "--batch", "1", "--device", "cpu"]
    out = torchrun(args + ["--threads", "1", "--out", str(tmp_path)])
    assert out.count("pretrain: loss") == 1 and "on 2 ranks (batch 2)" in out, out
    (rec,) = log(tmp_path, "pretrain")
    assert rec["world"] == 2 and rec["batch"] == 2
    assert (tmp_path / "pretrain.safetensors").is_file() and (tmp_path / "pretrain" / "ckpt").is_dir()


def test_distributed_without_torchrun_is_a_user_error(tmp_path, monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    args = ["train", "--stage", "vae", "--preset", TINY, "--steps", "1", "--distributed", "--out", str(tmp_path)]
    code, _, err = run_cli(args)
    assert code == 2 and "torchrun" in err and "Traceback" not in err, err
    assert not any(tmp_path.iterdir())  # nothing trained alone


def test_a_motion_stage_on_two_ranks_gives_the_losses_of_one_process(tmp_path):
    """`torchrun -m flowact train --stage motion-pretrain`, 1 window per rank, against one process
    with a batch of 2: each rank draws its own windows of the global batch and its rows of the
    noise. Both in float32 (ONEDNN_MAX_CPU_ISA=AVX2 reads bf16 as emulated: no autocast)."""
    from flowact.train.motion import MotionRun, train_motion
    from flowact.train.motion_data import build_cache

    cache = build_cache(tmp_path / "cache.npz", 2, seconds=6.0, seed=5)
    args = ["-m", "flowact", "train", "--stage", "motion-pretrain", "--data", str(cache), "--steps", "3"]
    args += ["--batch", "1", "--lr", "3e-3", "--warmup", "1", "--threads", "1", "--out", str(tmp_path / "two")]
    out = torchrun(args, env={"ONEDNN_MAX_CPU_ISA": "AVX2"})
    assert out.count("motion-pretrain: loss") == 1 and "on 2 ranks (batch 2)" in out, out
    one = MotionRun(stage="motion-pretrain", out=tmp_path / "one", cache=cache, steps=3, batch=2, lr=3e-3, warmup=1)
    train_motion(replace(one, bf16=False))
    two, one = log(tmp_path / "two", "motion-pretrain"), log(tmp_path / "one", "motion-pretrain")
    assert [(r["world"], r["batch"]) for r in two] == [(2, 2)] * 3 and [r["world"] for r in one] == [1] * 3
    assert rel(two[0]["loss"], one[0]["loss"]) < FIRST_STEP_RTOL, (two[0], one[0])
    diffs = [rel(a["loss"], b["loss"]) for a, b in zip(two, one)]
    assert max(diffs) < RTOL and len({r["loss"] for r in one}) == 3, diffs
