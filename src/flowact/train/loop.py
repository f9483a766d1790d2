"""The training loop shared by every stage: seeded, resumable, logged, safetensors out.

Batches are pure functions of (seed, step), the noise generator is re-seeded every step and
the optimizer state is checkpointed, so `--resume` continues exactly where a run stopped. The
same holds over ranks (distributed.py): rank r of a data-parallel run trains on its share of
the global batch, and a checkpoint holds no rank's state, so a run resumes on any rank count.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .. import weights as W
from ..config import Preset
from ..errors import FlowactError
from ..model import FlowActModel
from ..model.vae import Decoder
from ..precision import native_bf16
from .checkpoint import load_checkpoint, save_checkpoint
from .data import make_source
from .distributed import Ranks, join, leave
from .stages import STAGES, Stage, StageSettings, trainable


@dataclass(frozen=True)
class TrainRun:
    stage: str
    preset: Preset
    data: str  # "synth[:SEED]" or a folder
    out: Path
    steps: int = 1000
    batch: int = 4
    lr: float = 2e-4
    warmup: int = 100
    decay: float = 0.0  # the last `decay` fraction of the steps ramps the learning rate down to 10%
    seed: int = 0
    device: str = "cpu"
    init: Path | None = None  # weights to start from (e.g. the previous stage's output)
    teacher: Path | None = None  # distill: teacher weights (default: init)
    resume: bool = False
    save_every: int = 200
    bf16: bool | None = None  # autocast to bfloat16; None: on CUDA, and on a CPU with native bf16 (precision.py)
    only: tuple[str, ...] = ()  # train only the stage's parameters whose names start with one of these
    speaking: float = 0.0  # synth data: this fraction of the samples is a window of speech
    settings: StageSettings = StageSettings()
    # one rank of a torchrun job (distributed.py): `batch` is then per rank, the global batch is
    # batch x ranks, and rank 0 alone writes the log, the checkpoints and the weights
    distributed: bool = False


def build(run: TrainRun) -> tuple[FlowActModel, FlowActModel | None]:
    if run.stage not in STAGES:
        raise FlowactError(f"unknown stage '{run.stage}' (stages: {', '.join(STAGES)})")
    dev = torch.device(run.device)
    with torch.device(dev):
        model = FlowActModel(run.preset)
    if run.init is not None:
        # what a stage may grow that the init predates: the vae/decoder stages the decoder's
        # reference branch, the lips/visemes stages the lip refiner, the transformer stages the
        # audio injection (the branch and the injection start at zero: the init's output)
        new_ok = (
            tuple("vae.decoder." + k for k in Decoder.REFERENCE_BRANCH)
            if run.stage in ("vae", "decoder")
            else ("lips.",)
            if run.stage in ("lips", "visemes")
            else ("audio.",)
            if run.stage == "audio"
            else ("dit.audio_inject.",)
        )
        W.load_into(model, W.resolve(run.preset, weights=run.init), new_ok=new_ok)
    else:
        model.init_random(run.seed)
    teacher = None
    if run.stage == "distill":
        with torch.device(dev):
            teacher = FlowActModel(run.preset)
        src = run.teacher or run.init
        if src is None:
            raise FlowactError(
                "distill needs a teacher: pass --init (the teacher, also the student's start) or --teacher"
            )
        W.load_into(teacher, W.resolve(run.preset, weights=src))
        teacher.eval().requires_grad_(False)
    return model, teacher


def learning_rate(run: TrainRun, step: int) -> float:
    """Linear warm-up, constant, then (with `decay`) a linear ramp to 10% over the last steps."""
    lr = run.lr * min(1.0, (step + 1) / max(1, run.warmup))
    tail = int(run.decay * run.steps)
    if tail and step >= run.steps - tail:
        lr *= 1.0 - 0.9 * (step - (run.steps - tail) + 1) / tail
    return lr


def train(run: TrainRun, on_step: Callable[[int, dict], None] | None = None, source=None) -> dict:
    """Run one stage. `source` (optional) replaces the data named by `run.data`. With
    `run.distributed` this process is one rank of a torchrun job: it joins the process group
    (and leaves it at the end if it started it)."""
    if not run.distributed:
        return _train(run, Ranks(), on_step, source)
    ranks, dev, started = join(run.device)
    try:
        return _train(replace(run, device=str(dev)), ranks, on_step, source)
    finally:
        if started:
            leave()


def _train(run: TrainRun, ranks: Ranks, on_step, source) -> dict:
    torch.manual_seed(run.seed)
    model, teacher = build(run)
    stage = Stage(run.stage, model, run.preset, run.settings, teacher, ranks)
    params = trainable(model, run.stage)
    if run.only:
        ids = {id(p) for p in params}
        params = [p for n, p in model.named_parameters() if id(p) in ids and n.startswith(run.only)]
        if not params:
            raise FlowactError(f"--only {','.join(run.only)}: no parameter of the {run.stage} stage has that prefix")
    model.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=run.lr, betas=(0.9, 0.99), weight_decay=0.01)
    folder = run.out / run.stage
    start = 0
    if run.resume and (folder / "ckpt").exists():
        start = load_checkpoint(folder, model, opt)["step"]
    ranks.agree(start, f"the step to start from: every rank must see {folder / 'ckpt'}")
    ranks.broadcast(model.state_dict().values())  # one set of weights, whatever each rank built
    global_batch = run.batch * ranks.world
    source = source or make_source(
        run.data,
        run.preset.video.width,
        run.preset.video.height,
        run.seed,
        mouth=run.settings.mouth_weight > 0 or run.stage == "lips",
        speaking=run.speaking,
        video=run.stage not in ("visemes", "audio"),
    )
    if ranks.main:
        folder.mkdir(parents=True, exist_ok=True)
    log = (folder / "log.jsonl").open("a") if ranks.main else None
    dev = torch.device(run.device)
    # bf16 autocast where the device computes bf16 natively: a CPU that emulates it runs ~50x slower
    use_bf16 = run.bf16 if run.bf16 is not None else (dev.type == "cuda" or native_bf16()[0])
    history = []
    model.train()
    for step in range(start, run.steps):
        t0 = time.perf_counter()
        frames = stage.frames_needed(np.random.default_rng([run.seed, step, 0xB]))
        rows = range(global_batch)[ranks.rows(run.batch)]
        samples = [source.sample(step, i, frames) for i in rows]
        if run.settings.augment:
            samples = [heard_elsewhere(s, run.settings.augment, (run.seed, step, i)) for s, i in zip(samples, rows)]
        t_data = time.perf_counter() - t0
        g = torch.Generator(device=dev).manual_seed(run.seed * 1_000_003 + step)
        for group in opt.param_groups:
            group["lr"] = learning_rate(run, step)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16):
            loss, logs = stage.loss(samples, g)
        # the global batch's loss and logs: the means over ranks (counts, the ints, agree already)
        floats = [k for k, v in logs.items() if isinstance(v, float)]
        mean_loss, *values = ranks.mean_floats([float(loss.detach())] + [logs[k] for k in floats])
        logs.update(zip(floats, values))
        if not math.isfinite(mean_loss):
            raise RuntimeError(f"{run.stage} step {step}: loss is {mean_loss}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        ranks.average_grads(params)
        gnorm = torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        rec = {
            "step": step + 1,
            "loss": mean_loss,
            "grad_norm": float(gnorm),
            "lr": opt.param_groups[0]["lr"],
            "world": ranks.world,
            "batch": global_batch,
            "data_s": round(t_data, 3),
            "step_s": round(time.perf_counter() - t0, 3),
            **logs,
        }
        history.append(rec)
        if log:
            log.write(json.dumps(rec) + "\n")
            log.flush()
        if on_step:
            on_step(step + 1, rec)
        if ranks.main and ((step + 1) % run.save_every == 0 or step + 1 == run.steps):
            extra = {"stage": run.stage, "preset": run.preset.name, "world": ranks.world, "batch": global_batch}
            save_checkpoint(folder, model, opt, step + 1, extra)
    final = run.out / f"{run.stage}.safetensors"
    if log:
        log.close()
        W.save(model, final)
    ranks.barrier()  # every rank returns once the weights are written
    k = max(1, len(history) // 5)
    losses = [h["loss"] for h in history]
    return {
        "stage": run.stage,
        "steps": run.steps,
        "world": ranks.world,
        "batch": global_batch,
        "resumed_from": start,
        "weights": str(final),
        "loss_first": float(np.mean(losses[:k])) if losses else None,
        "loss_last": float(np.mean(losses[-k:])) if losses else None,
        "last": history[-1] if history else None,
    }


def heard_elsewhere(sample, share: float, key: tuple[int, int, int]):
    """The sample, its audio augmented (room, band limits, noise, telephone codec, loudness) with probability `share`;
    drawn from (seed, step, index in batch), so a resumed run augments alike."""
    import dataclasses

    from .motion_data import augment

    rng = np.random.default_rng([*key, 0xA6])
    if rng.random() >= share:
        return sample
    return dataclasses.replace(sample, audio=augment(sample.audio, rng))
