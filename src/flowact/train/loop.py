"""The one training loop. It trains an objective (a model, the parameters that learn, batches, a
loss): the toon model's stages (stages.py), the motion engine's (motion.py) and the judge's
networks (judge/train.py) are small classes that `fit` runs alike.

- Seeded and resumable: a batch is a pure function of (seed, step, index in the global batch),
  the noise generator is re-seeded every step and the optimizer state is checkpointed, so
  `resume` continues exactly where a run stopped.
- Data-parallel (distributed.py): rank r of a torchrun job trains on its rows of the global
  batch, the gradients are averaged, and a checkpoint holds no rank's state, so a run resumes on
  any rank count.
- bf16 autocast where the device computes it natively; a loss or gradient that is not finite
  stops the run before it reaches the weights; one JSON line per step; safetensors out.
- The next batch is drawn in a thread while a step trains.

`TrainRun` and `train` run one of the toon model's stages (`flowact train --stage vae`, ...).
"""

from __future__ import annotations

import json
import math
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator, Protocol

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
from .stages import STAGES, Stage, StageSettings


@dataclass(frozen=True, kw_only=True)
class Run:
    """The loop's settings, shared by every objective's run (TrainRun, motion.MotionRun, the judge's)."""

    out: Path  # <out>/<stage>.safetensors, <out>/<stage>/ckpt, <out>/<stage>/log.jsonl
    steps: int = 1000
    batch: int = 4  # per rank with `distributed`: the global batch is batch x ranks
    lr: float = 2e-4
    warmup: int = 100
    decay: float = 0.0  # the last `decay` fraction of the steps ramps the learning rate down to floor x lr
    cosine: bool = False  # that ramp is half a cosine (else a line)
    floor: float = 0.1
    betas: tuple[float, float] = (0.9, 0.99)  # AdamW's
    weight_decay: float = 0.01
    clip: float = 1.0  # the gradient's norm is clipped to this (math.inf: never)
    seed: int = 0
    device: str = "cpu"
    resume: bool = False
    save_every: int = 200
    bf16: bool | None = None  # autocast to bfloat16; None: on CUDA, and on a CPU with native bf16 (precision.py)
    only: tuple[str, ...] = ()  # train only the objective's parameters whose names start with one of these
    # one rank of a torchrun job (distributed.py): `batch` is then per rank, and rank 0 alone writes
    # the log, the checkpoints and the weights
    distributed: bool = False


class Objective(Protocol):
    """What `fit` trains. Built by `fit` (after seeding torch with the run's seed) for this
    process's share of the run (`Ranks`); a loss draws its noise with `ranks.randn`/`rand`/
    `per_sample`, the global batch's draws, so that the ranks' losses average to the global one."""

    name: str  # the stage: <out>/<name>/ and <out>/<name>.safetensors
    model: torch.nn.Module  # checkpointed whole; in train mode while the loop runs

    def parameters(self) -> list[torch.nn.Parameter]:
        """The parameters that learn; the rest of `model` is frozen."""
        ...

    def batch(self, step: int, rows: range):
        """The global batch's `rows` at `step`: a pure function of (seed, step, rows)."""
        ...

    def loss(self, batch, g: torch.Generator) -> tuple[torch.Tensor, dict]:
        """(the loss, logs of floats and ints); its noise from `g`."""
        ...

    def save(self, path: Path) -> None:
        """The trained weights, as the stage hands them on."""
        ...


def learning_rate(run: Run, step: int) -> float:
    """Linear warm-up, constant, then (with `decay`) a ramp to `floor` x lr over the last steps:
    a line that reaches the floor at the last step, or half a cosine from lr at its first."""
    lr = run.lr * min(1.0, (step + 1) / max(1, run.warmup))
    tail = int(run.decay * run.steps)
    start = run.steps - tail
    if tail and step >= start:
        if run.cosine:
            lr *= run.floor + (1 - run.floor) * 0.5 * (1 + math.cos(math.pi * (step - start) / tail))
        else:
            lr *= 1.0 - (1 - run.floor) * (step - start + 1) / tail
    return lr


def fit(run: Run, make: Callable[[Ranks], Objective], on_step: Callable[[int, dict], None] | None = None) -> dict:
    """Train the objective `make(ranks)` builds; returns a summary. `on_step(step, record)` after
    every step. With `run.distributed` this process is one rank of a torchrun job: it joins the
    process group (and leaves it at the end if it started it)."""
    if not run.distributed:
        return _fit(run, Ranks(device=torch.device(run.device)), make, on_step)
    ranks, dev, started = join(run.device)
    try:
        return _fit(replace(run, device=str(dev)), ranks, make, on_step)
    finally:
        if started:
            leave()


def _fit(run: Run, ranks: Ranks, make, on_step) -> dict:
    torch.manual_seed(run.seed)
    obj = make(ranks)
    model, params = obj.model, trainable(obj, run.only)
    model.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=run.lr, betas=run.betas, weight_decay=run.weight_decay)
    folder = run.out / obj.name
    start = 0
    if run.resume and (folder / "ckpt").exists():
        start = load_checkpoint(folder, model, opt)["step"]
    ranks.agree(start, f"the step to start from: every rank must see {folder / 'ckpt'}")
    ranks.broadcast(model.state_dict().values())  # one set of weights, whatever each rank built
    global_batch = run.batch * ranks.world
    rows = range(global_batch)[ranks.rows(run.batch)]
    if ranks.main:
        folder.mkdir(parents=True, exist_ok=True)
    log = (folder / "log.jsonl").open("a") if ranks.main else None
    dev = torch.device(run.device)
    # bf16 autocast where the device computes bf16 natively: a CPU that emulates it runs ~50x slower
    use_bf16 = run.bf16 if run.bf16 is not None else (dev.type == "cuda" or native_bf16()[0])
    history = []
    t_run = time.perf_counter()
    model.train()
    with closing(prefetched(obj, range(start, run.steps), rows)) as batches:
        for step, batch, t_data in batches:
            t0 = time.perf_counter()
            g = torch.Generator(device=dev).manual_seed(run.seed * 1_000_003 + step)
            for group in opt.param_groups:
                group["lr"] = learning_rate(run, step)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16):
                loss, logs = obj.loss(batch, g)
            # the global batch's loss and logs: the means over ranks (counts, the ints, agree already)
            floats = [k for k, v in logs.items() if isinstance(v, float)]
            mean_loss, *values = ranks.mean_floats([float(loss.detach())] + [logs[k] for k in floats])
            logs.update(zip(floats, values))
            if not math.isfinite(mean_loss):
                raise diverged(obj.name, step, "loss", mean_loss, start, run.save_every)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            ranks.average_grads(params)
            gnorm = float(torch.nn.utils.clip_grad_norm_(params, run.clip))
            if not math.isfinite(gnorm):  # before the step: the weights (and the checkpoints) stay finite
                raise diverged(obj.name, step, "gradient's norm", gnorm, start, run.save_every)
            opt.step()
            rec = {
                "step": step + 1,
                "loss": mean_loss,
                "grad_norm": gnorm,
                "lr": opt.param_groups[0]["lr"],
                "world": ranks.world,
                "batch": global_batch,
                "data_s": round(t_data, 3),  # the wait for this step's batch
                "step_s": round(time.perf_counter() - t0 + t_data, 3),
                **logs,
            }
            history.append(rec)
            if log:
                log.write(json.dumps(rec) + "\n")
                log.flush()
            if on_step:
                on_step(step + 1, rec)
            if ranks.main and ((step + 1) % run.save_every == 0 or step + 1 == run.steps):
                save_checkpoint(
                    folder, model, opt, step + 1, {"stage": obj.name, "world": ranks.world, "batch": global_batch}
                )
    final = run.out / f"{obj.name}.safetensors"
    if log:
        log.close()
        obj.save(final)
    ranks.barrier()  # every rank returns once the weights are written
    k = max(1, len(history) // 5)
    losses = [h["loss"] for h in history]
    return {
        "stage": obj.name,
        "steps": run.steps,
        "world": ranks.world,
        "batch": global_batch,
        "resumed_from": start,
        "weights": str(final),
        "loss_first": float(np.mean(losses[:k])) if losses else None,
        "loss_last": float(np.mean(losses[-k:])) if losses else None,
        "seconds": round(time.perf_counter() - t_run, 1),
        "last": history[-1] if history else None,
    }


def trainable(obj: Objective, only: tuple[str, ...]) -> list[torch.nn.Parameter]:
    """The objective's parameters that learn; with `only`, those whose names start with one of its prefixes."""
    params = obj.parameters()
    if only:
        ids = {id(p) for p in params}
        params = [p for n, p in obj.model.named_parameters() if id(p) in ids and n.startswith(only)]
        if not params:
            raise FlowactError(f"--only {','.join(only)}: no parameter of the {obj.name} stage has that prefix")
    return params


def prefetched(obj: Objective, steps: range, rows: range) -> Iterator[tuple[int, object, float]]:
    """(step, batch, seconds waited for it) for each step in turn; the next step's batch is drawn in
    a thread meanwhile (batches are pure functions of the step, so the order of draws does not matter)."""
    with ThreadPoolExecutor(1, thread_name_prefix="batch") as pool:
        nxt = pool.submit(obj.batch, steps[0], rows) if steps else None
        for step in steps:
            t0 = time.perf_counter()
            batch = nxt.result()
            waited = time.perf_counter() - t0
            if step + 1 < steps.stop:
                nxt = pool.submit(obj.batch, step + 1, rows)
            yield step, batch, waited


def diverged(name: str, step: int, what: str, value: float, start: int, save_every: int) -> FlowactError:
    last = max(start, step // save_every * save_every)
    where = f"resume from its checkpoint at step {last}" if last else "start again"
    return FlowactError(
        f"{name} step {step + 1}: the {what} is {value} (the run diverged); the weights were not updated. "
        f"Lower --lr (or raise --warmup) and {where}"
    )


# -- the toon model's stages ------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainRun(Run):
    """One of the toon model's stages (stages.py STAGES) on `data`, from `init`."""

    stage: str
    preset: Preset
    data: str  # "synth[:SEED]" or a folder
    init: Path | None = None  # weights to start from (e.g. the previous stage's output)
    teacher: Path | None = None  # distill: teacher weights (default: init)
    speaking: float = 0.0  # synth data: this fraction of the samples is a window of speech
    settings: StageSettings = StageSettings()


def build(run: TrainRun, device: torch.device | str | None = None) -> tuple[FlowActModel, FlowActModel | None]:
    """(the model, the distill stage's teacher or None) of a toon stage, on `device` (default: the run's)."""
    if run.stage not in STAGES:
        raise FlowactError(f"unknown stage '{run.stage}' (stages: {', '.join(STAGES)})")
    dev = torch.device(device or run.device)
    with torch.device(dev):
        model = FlowActModel(run.preset)
    if run.init is not None:
        # what a stage may grow that the init predates: the vae/decoder stages the decoder's
        # reference branch, the lips/visemes stages the lip refiner, the transformer stages the
        # audio and motion injections (the branch and the injections start at zero: the init's output)
        new_ok = (
            tuple(
                "vae.decoder." + k
                for k in Decoder.REFERENCE_BRANCH + Decoder.MOTION_BRANCH + Decoder.ARMS_BRANCH + Decoder.MOUTH_BRANCH
            )
            if run.stage in ("vae", "decoder")
            else ("lips.",)
            if run.stage in ("lips", "visemes")
            else ("audio.",)
            if run.stage == "audio"
            else ("dit.audio_inject.", "dit.motion_")
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


def train(run: TrainRun, on_step: Callable[[int, dict], None] | None = None, source=None) -> dict:
    """Run one toon stage. `source` (optional) replaces the data named by `run.data`."""

    def make(ranks: Ranks):
        model, teacher = build(run, ranks.device)
        clips = source or make_source(
            run.data,
            run.preset.video.width,
            run.preset.video.height,
            run.seed,
            mouth=run.settings.mouth_weight > 0 or run.settings.closed_input > 0 or run.stage == "lips",
            speaking=run.speaking,
            video=run.stage not in ("visemes", "audio"),
        )
        return Stage(run.stage, model, run.preset, run.settings, teacher, ranks, clips, run.seed)

    return fit(run, make, on_step)
