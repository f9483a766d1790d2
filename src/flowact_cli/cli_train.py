"""`flowact train` (the four training stages). Registered by cli.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def train(
        stage: str = typer.Option(..., "--stage", help="vae | pretrain | selfforce | distill"),
        preset: str = typer.Option("toon-128", "--preset", help="Preset name or YAML file."),
        data: str = typer.Option("synth", "--data", help="'synth[:SEED]' (the synthetic world, on the fly), a `flowact synth` folder, or a folder of mp4 files with audio."),
        out: Path = typer.Option(Path("runs/toon-128"), "--out", help="Run folder: <stage>.safetensors, <stage>/ckpt, <stage>/log.jsonl."),
        steps: int = typer.Option(1000, "--steps"),
        batch: int = typer.Option(4, "--batch"),
        lr: float = typer.Option(2e-4, "--lr"),
        seed: int = typer.Option(0, "--seed"),
        device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
        init: Optional[Path] = typer.Option(None, "--init", help="Start from these weights (the previous stage's output)."),
        teacher: Optional[Path] = typer.Option(None, "--teacher", help="distill: teacher weights (default: --init)."),
        resume: bool = typer.Option(False, "--resume", help="Continue from <out>/<stage>/ckpt."),
        save_every: int = typer.Option(200, "--save-every"),
        threads: Optional[int] = typer.Option(None, "--threads"),
        as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    ):
        """Train one stage of the FlowAct-R1 recipe.

        Stages chain through --init:

            flowact train --stage vae --steps 3000 --out runs/t128

            flowact train --stage pretrain --init runs/t128/vae.safetensors --out runs/t128

            flowact train --stage selfforce --init runs/t128/pretrain.safetensors --out runs/t128

            flowact train --stage distill --init runs/t128/selfforce.safetensors --out runs/t128

        Every stage is seeded and resumable (--resume), logs one JSON line per step, and
        writes safetensors.
        """
        import torch
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from .config import load_preset
        from .render import pick_device
        from .train.loop import TrainRun, train as run_train

        dev = pick_device(device)
        if dev.type == "cpu" and threads:
            torch.set_num_threads(threads)
        run = TrainRun(stage=stage, preset=load_preset(preset), data=data, out=out, steps=steps, batch=batch, lr=lr,
                       seed=seed, device=str(dev), init=init, teacher=teacher, resume=resume, save_every=save_every)
        err = Console(stderr=True)
        with Progress(TextColumn(f"train {stage}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                      TimeRemainingColumn(), console=err, disable=not err.is_terminal) as bar:
            task = bar.add_task(stage, total=steps, info="")
            summary = run_train(run, lambda s, rec: bar.update(task, completed=s, info=f"loss {rec['loss']:.4f}"))
        if as_json:
            print(json.dumps(summary, indent=2))
        else:
            err.print(f"{stage}: loss {summary['loss_first']:.4f} -> {summary['loss_last']:.4f} "
                      f"over steps {summary['resumed_from']}..{steps}; weights: {summary['weights']}")
