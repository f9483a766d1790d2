"""The ranks of tests/test_distributed_train.py, started by torchrun (`python -m torch.distributed.run
--standalone --nproc-per-node 2 tests/distributed_ranks.py OUT CACHE`): every run trains on 2 gloo
ranks with 1 clip each, a global batch of 2. `training_run` is shared with the test, which trains
the same runs in one process with a batch of 2.

  OUT/two/<stage>/...       vae (synthetic world, 2 steps) and pretrain (latent cache, 4 steps)
  OUT/stopped/pretrain/...  pretrain stopped at step 2, then resumed on the same 2 ranks to step 4
  OUT/handover/pretrain/... a copy of `stopped` at step 2, for the test to resume on 1 rank
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import replace
from pathlib import Path

import torch

from flowact.config import load_preset
from flowact.train.loop import TrainRun, train
from flowact.train.stages import StageSettings
from helpers import TINY


def training_run(stage: str, out: Path, cache: Path, batch: int, **kw) -> TrainRun:
    """`stage` on the tiny preset, fp32, a checkpoint every 2 steps. vae: 2 steps of the synthetic
    world with motion and mouth weights (weighted means over pixels, ~1 s a step); pretrain:
    4 steps of a latent cache (a mean over the noisy frames only)."""
    common = dict(preset=load_preset(TINY), out=out, batch=batch, lr=2e-3, warmup=1, save_every=2, bf16=False)
    if stage == "vae":
        weights = StageSettings(motion_weight=2.0, mouth_weight=1.0)
        run = TrainRun("vae", data="synth", steps=2, settings=weights, **common)
    else:
        # seed 2: at steps 1 and 2 one sample has a clean context chunk and the other none, so
        # the ranks' losses average to the global one only with the global count of noisy frames
        run = TrainRun(stage, data=str(cache), steps=4, seed=2, init=cache / "init.safetensors", **common)
    return replace(run, **kw)


def main(out: Path, cache: Path) -> None:
    torch.set_num_threads(1)
    import torch.distributed as dist

    from flowact.train import distributed

    distributed.BUCKET = 4096  # the gradients all-reduce in many buckets: the bucketing is under test too

    dist.init_process_group("gloo")  # train() joins it and leaves it running
    for stage in ("vae", "pretrain"):
        train(training_run(stage, out / "two", cache, batch=1, distributed=True))
    stopped = training_run("pretrain", out / "stopped", cache, batch=1, distributed=True)
    train(replace(stopped, steps=2))
    if dist.get_rank() == 0:
        shutil.copytree(out / "stopped", out / "handover")
    dist.barrier()
    train(replace(stopped, resume=True))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
