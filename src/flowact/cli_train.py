"""`flowact train` (the training stages) and `flowact cache`. Registered by cli.py."""

from __future__ import annotations

import json
import os
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from .cli_common import stderr_console
from .config import DEFAULT_PRESET
from .errors import FlowactError
from .train.stage_names import MOTION_STAGES, TOON_STAGES

# the stages of train/stages.py STAGES (by name, from a torch-free module: --help must not import torch)
StageName = Enum(
    "StageName",
    {n: n for n in TOON_STAGES},
    type=str,
)
# --stage also takes the motion engine's stages (train/motion.py), which train their own model; their
# names come from train/stage_names.py, which the motion objectives take theirs from
TrainStage = Enum("TrainStage", {n: n for n in (*(s.value for s in StageName), *MOTION_STAGES)}, type=str)


def register(app: typer.Typer) -> None:
    """Add `train` and `cache` to the main app."""
    app.command(name="train")(train)
    app.command(name="cache")(cache)


def train(
    stage: TrainStage = typer.Option(
        ...,
        "--stage",
        help=(
            "vae | decoder (vae with the encoder frozen) | pretrain | selfforce | distill | visemes (the "
            "lip refiner's ear: audio -> mouth parameters, no frames drawn) | lips (the lip refiner, "
            "on a finished model) | audio (the transformer's own audio encoder, audio.frame_tokens: "
            "audio -> mouth parameters) | motion-audio | motion-pretrain | motion-selfforce | motion-distill "
            "(the motion engine, train/motion.py: --out is its run folder, --data synth[:SEED] or a cache .npz; "
            "--preset and --device are not used: it trains on the CPU)"
        ),
    ),
    preset: str = typer.Option(DEFAULT_PRESET, "--preset", help="Preset name or YAML file."),
    data: str = typer.Option(
        "synth",
        "--data",
        help=(
            "'synth[:SEED]' (the synthetic world, on the fly), a `flowact synth` folder, or a folder of "
            "mp4 files with audio."
        ),
    ),
    out: Path = typer.Option(
        Path("runs/toon-128"), "--out", help="Run folder: <stage>.safetensors, <stage>/ckpt, <stage>/log.jsonl."
    ),
    steps: int = typer.Option(1000, "--steps"),
    batch: int = typer.Option(
        4, "--batch", help="Clips per step; per rank with --distributed (the global batch is batch x ranks)."
    ),
    lr: float = typer.Option(2e-4, "--lr"),
    warmup: int = typer.Option(100, "--warmup", help="Steps of linear learning-rate warm-up."),
    decay: float = typer.Option(
        0.0, "--decay", help="Fraction of the steps, at the end, that ramp the learning rate down to 10%."
    ),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    init: Optional[Path] = typer.Option(None, "--init", help="Start from these weights (the previous stage's output)."),
    teacher: Optional[Path] = typer.Option(None, "--teacher", help="distill: teacher weights (default: --init)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from <out>/<stage>/ckpt."),
    save_every: int = typer.Option(200, "--save-every"),
    threads: Optional[int] = typer.Option(None, "--threads"),
    teacher_steps: int = typer.Option(
        16,
        "--teacher-steps",
        help=(
            "distill: the guided teacher's Euler steps per chunk, split evenly over the student's steps, "
            "rounded down (16 gives 15 on a 3-step preset, 8 gives 6)."
        ),
    ),
    guidance: float = typer.Option(
        2.0, "--guidance", help="distill: the teacher's classifier-free guidance scale (1 = off)."
    ),
    guide_on: str = typer.Option(
        "audio+text",
        "--guide-on",
        help=(
            "distill: what the teacher's guidance amplifies: audio+text (the unconditional pass drops both) "
            "or audio (the prompt stays in both passes; guidance then changes only what the speech changes)."
        ),
    ),
    guide_below: float = typer.Option(
        1.0,
        "--guide-below",
        min=0.0,
        max=1.0,
        help=(
            "distill: the teacher guides only at noise levels t <= this (1 = everywhere; 0.7 leaves the first "
            "steps, where the head's place is decided, unguided)."
        ),
    ),
    self_context: bool = typer.Option(
        False,
        "--self-context",
        help=(
            "distill: the student rolls the context chunks out itself (its own bank, as inference fills it; "
            "self-forcing) and the teacher is shown those latents; default: both are shown the clip's."
        ),
    ),
    motion_weight: float = typer.Option(
        0.0,
        "--motion-weight",
        help=(
            "vae/decoder: extra L1 weight (1 + W) on pixels that differ from the reference (mouth, eyes, "
            "hands): sharper moving parts."
        ),
    ),
    mouth_weight: float = typer.Option(
        0.0,
        "--mouth-weight",
        help=(
            "extra loss weight (1 + W) on the open mouth, from the synthetic world's masks (--data synth "
            "only). vae/decoder: on its pixels, a mouth the decoder must draw, not copy; "
            "pretrain/selfforce/distill: on its latent cells, about 2%% of the frame otherwise."
        ),
    ),
    viseme_weight: float = typer.Option(
        0.0,
        "--viseme-weight",
        help=(
            "pretrain (audio.frame_tokens): weight of the audio encoder's mouth-parameter error beside the "
            "flow-matching loss, so its tokens keep saying how the mouth is shaped (a latent cache built "
            "with --labels)."
        ),
    ),
    closed_input: float = typer.Option(
        0.0,
        "--closed-input",
        help=(
            "vae/decoder, for a decoder that reads motion (preset vae.motion): this share of the samples is "
            "encoded from its frames drawn with the mouth at rest (the target as drawn), so the decoder learns "
            "the mouth from the motion (--data synth only)."
        ),
    ),
    posterior_noise: float = typer.Option(
        1.0,
        "--posterior-noise",
        help=(
            "vae/decoder: scale of the noise in the latent sample the decoder reads (1: as trained; 0: the "
            "encoder's mean, as a latent cache and a stream use it)."
        ),
    ),
    pixel_weight: float = typer.Option(
        0.0,
        "--pixel-weight",
        help=(
            "pretrain/memory: weight of an L1 loss on the mouth's pixels, decoded by the frozen VAE "
            "decoder from the predicted clean latents, beside the flow-matching loss (the encoder's "
            "latents blur the mouth). Needs pixels: a latent cache built with --frames --labels, or "
            "--data synth. About doubles a step."
        ),
    ),
    augment: float = typer.Option(
        0.0,
        "--augment",
        help=(
            "Transformer and audio stages: this fraction of the samples hears its audio as another "
            "microphone, room or phone line would (reverberation, band limits, noise, a G.711 codec, "
            "-30 to +8 dB), so human recordings sound familiar."
        ),
    ),
    arms: bool = typer.Option(
        False,
        "--arms",
        help="motion-* stages started without --init: the engine also makes the 8 arm numbers (ARM_KEYS) after "
        "the 16, which the toon route's video model reads (docs/motion-video.md).",
    ),
    only: Optional[str] = typer.Option(
        None,
        "--only",
        help=(
            "Train only the stage's parameters whose names start with one of these comma-separated "
            "prefixes (e.g. vae.decoder.ref.,vae.decoder.alpha_out.: a newly grown branch on a frozen decoder)."
        ),
    ),
    speaking: float = typer.Option(
        0.0,
        "--speaking",
        help=(
            "--data synth: this fraction of the samples is a window of speech (default: windows anywhere, "
            "mostly with the mouth at rest)."
        ),
    ),
    distributed: bool = typer.Option(
        False,
        "--distributed",
        help=(
            "Data-parallel over the ranks of a torchrun job (`torchrun --nproc-per-node N -m flowact train ...`; "
            "NCCL on CUDA, gloo on CPU); on by itself under torchrun. Rank 0 writes the log, checkpoints, weights."
        ),
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
):
    """Train one stage of the FlowAct-R1 recipe.

    Stages chain through --init:

        flowact train --stage vae --steps 3000 --out runs/t128

        flowact train --stage pretrain --init runs/t128/vae.safetensors --out runs/t128

        flowact train --stage memory --init runs/t128/pretrain.safetensors --out runs/t128

        flowact train --stage selfforce --init runs/t128/memory.safetensors --out runs/t128

        flowact train --stage distill --init runs/t128/selfforce.safetensors --out runs/t128

    and, on the finished model, the lip refiner (a preset with a `lips:` section):

        flowact train --stage lips --preset P --init runs/t128/distill.safetensors --data synth --speaking 0.7

    memory learns the next chunk through the real memory bank, on every slot layout a long
    stream makes (pretrain's one pass shows every earlier frame at consecutive times).

    Every stage is seeded and resumable (--resume), logs one JSON line per step, and
    writes safetensors. The transformer stages train fastest from a latent cache
    (`flowact cache`, then --data that folder): the VAE then runs once per clip, not per step.

    On several GPUs or machines, torchrun starts one process per device (--batch is per rank):

        torchrun --nproc-per-node 8 -m flowact train --stage pretrain --batch 4 --init runs/t128/vae.safetensors
    """
    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .config import load_preset
    from .routes import pick_device
    from .train.distributed import launched
    from .train.loop import TrainRun, train as run_train
    from .train.stages import StageSettings

    dev = pick_device(device)
    if dev.type == "cpu" and threads:
        torch.set_num_threads(threads)
    stage = stage.value
    if guide_on not in ("audio+text", "audio"):
        raise FlowactError(f"--guide-on must be audio+text or audio, not {guide_on!r}")
    if posterior_noise < 0:
        raise FlowactError(f"--posterior-noise is a scale >= 0 (got {posterior_noise:g})")
    if not 0 <= closed_input <= 1 or (closed_input > 0 and stage not in ("vae", "decoder")):
        raise FlowactError(f"--closed-input is a share in [0, 1] for the vae and decoder stages (got {closed_input:g})")
    if self_context and stage != "distill":
        raise FlowactError(f"--self-context is for --stage distill (got {stage})")
    if pixel_weight < 0 or (pixel_weight > 0 and stage not in ("pretrain", "memory")):
        raise FlowactError(
            f"--pixel-weight is a weight >= 0 for --stage pretrain or memory (got {pixel_weight:g} for {stage})"
        )
    if stage in MOTION_STAGES:
        from .train.motion import MotionSettings, train_motion

        settings = MotionSettings(teacher_steps=teacher_steps, guidance=guidance)
        run = _motion_run(stage, data, out, steps, batch, lr, warmup, seed, init, teacher, resume, save_every,
                          distributed or launched(), settings, arms)  # fmt: skip
        train, distributed = train_motion, run.distributed
    else:
        run = TrainRun(
            stage=stage,
            preset=load_preset(preset),
            data=data,
            out=out,
            steps=steps,
            batch=batch,
            lr=lr,
            warmup=warmup,
            decay=decay,
            seed=seed,
            device=str(dev),
            init=init,
            teacher=teacher,
            resume=resume,
            save_every=save_every,
            speaking=speaking,
            distributed=distributed or launched(),
            only=tuple(s.strip() for s in only.split(",") if s.strip()) if only else (),
            settings=StageSettings(
                teacher_steps=teacher_steps,
                guidance=guidance,
                guide_on=guide_on,
                guide_below=guide_below,
                self_context=self_context,
                motion_weight=motion_weight,
                mouth_weight=mouth_weight,
                viseme_weight=viseme_weight,
                augment=augment,
                pixel_weight=pixel_weight,
                posterior_noise=posterior_noise,
                closed_input=closed_input,
            ),
        )
        train, distributed = run_train, run.distributed
    main = not distributed or os.environ.get("RANK", "0") == "0"  # the other ranks print nothing
    err = stderr_console(soft_wrap=False)
    with Progress(
        TextColumn(f"train {stage}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
        console=err,
        disable=not (err.is_terminal and main),
    ) as bar:
        task = bar.add_task(stage, total=steps, info="")
        summary = train(run, lambda s, rec: bar.update(task, completed=s, info=f"loss {rec['loss']:.4f}"))
    if not main:
        return
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        err.print(
            f"{stage}: loss {summary['loss_first']:.4f} -> {summary['loss_last']:.4f} "
            f"over steps {summary['resumed_from']}..{steps}"
            + (f" on {summary['world']} ranks (batch {summary['batch']})" if summary.get("world", 1) > 1 else "")
            + f"; weights: {summary['weights']}"
        )


def _motion_run(stage, data, out, steps, batch, lr, warmup, seed, init, teacher, resume, save_every, distributed,
                settings, arms=False):  # fmt: skip
    """A motion engine stage's run (train/motion.py; on the CPU, the model is small; under torchrun
    on gloo ranks). --data: synth[:SEED] or a motion cache .npz."""
    from .model.motion import MotionConfig
    from .train.motion import MotionRun

    cache_file = None
    if data.startswith("synth"):
        seed = int(data.split(":", 1)[1]) if ":" in data else seed
    else:
        cache_file = Path(data)
        if not cache_file.is_file():
            raise FlowactError(f"--data for a motion stage is synth[:SEED] or a motion cache .npz, got '{data}'")
    config = MotionConfig(arms=8 if arms else 0)
    return MotionRun(stage=stage, out=out, steps=steps, batch=batch, lr=lr, warmup=warmup, seed=seed, init=init,
                     teacher=teacher, resume=resume, save_every=save_every, cache=cache_file,
                     distributed=distributed, settings=settings, config=config)  # fmt: skip


def cache(
    init: Path = typer.Option(
        ..., "--init", help="Trained weights whose VAE encodes the clips (the vae stage's output)."
    ),
    out: Path = typer.Option(..., "--out", help="Cache folder: shard_NNNN.npz (+ .prompts.json) and cache.json."),
    clips: int = typer.Option(1000, "--clips", help="Training clips to render and encode."),
    seconds: float = typer.Option(4.0, "--seconds", help="Length of each clip."),
    preset: str = typer.Option(DEFAULT_PRESET, "--preset", help="Preset name or YAML file."),
    seed: int = typer.Option(0, "--seed", help="World seed of the clips."),
    part: str = typer.Option(
        "0/1", "--part", help="K/N: do every N-th shard from K (run N processes to share the work)."
    ),
    threads: Optional[int] = typer.Option(None, "--threads"),
    speaking: float = typer.Option(
        0.0, "--speaking", help="Fraction of the clips that open with speech (default: the world's own mix)."
    ),
    labels: bool = typer.Option(
        False,
        "--labels",
        help="Also store the world's mouth parameters per frame and the open mouth on the latent grid "
        "(for --mouth-weight and --viseme-weight on the transformer stages).",
    ),
    keep_stats: bool = typer.Option(
        False,
        "--keep-stats",
        help="Keep --init's latent statistics instead of measuring them (a transformer trained on them goes on).",
    ),
    frames: bool = typer.Option(
        False,
        "--frames",
        help="Also store the clips' pixels (about 7 MB a 6 s clip at 128x128), for --pixel-weight on pretrain.",
    ),
):
    """Render training clips from the synthetic world and encode them once with a trained VAE.

    The transformer stages (pretrain, selfforce, distill) then read latents from the
    folder instead of running the world and the VAE every step:

        flowact cache --init runs/t128/vae.safetensors --out data/t128-latents --clips 1000

        flowact train --stage pretrain --data data/t128-latents --init runs/t128/vae.safetensors

    Only training characters and voices are used (held-out ones stay for evaluation).
    Resumable: finished shards (128 clips each) are kept.
    """
    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from . import weights as W
    from .config import load_preset
    from .model import FlowActModel
    from .train.cache import SHARD, build_cache

    try:
        k, n = (int(v) for v in part.split("/"))
        assert 0 <= k < n
    except (ValueError, AssertionError):
        raise FlowactError(f"--part must be K/N with 0 <= K < N, got '{part}'") from None
    if threads:
        torch.set_num_threads(threads)
    p = load_preset(preset)
    model = FlowActModel(p)
    W.load_into(model, W.resolve(p, weights=init))
    model.eval()
    err = stderr_console(soft_wrap=False)
    with Progress(
        TextColumn("cache"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=not err.is_terminal,
    ) as bar:
        mine = sum(min(clips, s0 + SHARD) - s0 for s0 in range(k * SHARD, clips, n * SHARD))
        task = bar.add_task("cache", total=mine)
        done = [0]

        def on_clip(i: int) -> None:
            bar.advance(task)
            done[0] += 1
            if not err.is_terminal and done[0] % 32 == 0:  # logs and pipes still see progress
                err.print(f"cache: {done[0]}/{mine} clips", highlight=False)

        if not 0.0 <= speaking <= 1.0:
            raise FlowactError(f"--speaking is a fraction of the clips, 0 to 1 (got {speaking:g})")
        build_cache(
            model,
            out,
            clips,
            seconds,
            seed,
            part=(k, n),
            on_clip=on_clip,
            speaking=speaking,
            labels=labels,
            keep_stats=keep_stats,
            frames_too=frames,
        )
    err.print(f"cache: {clips} clips of {seconds:g} s in {out}")
