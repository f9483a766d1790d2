"""What every command module shares: the stderr console, the random-weights warning, JSON
output, and the choices of the options (as enums: Typer checks them and lists them in --help).

Each command lives in a module-level function of its cli_<area>.py, with its help in its
docstring; that module's `register(app)` adds it. cli.py builds the app and calls them all.
"""

from __future__ import annotations

import json
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from .media.image import FIT_MODES
from .options import Int8Mode

__all__ = [
    "DeviceOpt",
    "DtypeOpt",
    "Fit",
    "Int8Mode",
    "Int8Opt",
    "NoLipsOpt",
    "Planner",
    "PresetOpt",
    "RoutePresetOpt",
    "RandomWeightsOpt",
    "ThreadsOpt",
    "WeightsOpt",
    "emit_json",
    "stderr_console",
    "warn_random",
]


# how the reference picture fills the frame: the choices media/image.py knows
Fit = Enum("Fit", {m: m for m in FIT_MODES}, type=str)


class Planner(str, Enum):
    """Who picks the live stream's states: `rules` from voice activity, `none` = only commands."""

    rules = "rules"
    none = "none"


# the model options render, bench and live share (Typer's Annotated style: one definition each)
PresetOpt = Annotated[str, typer.Option("--preset", help="Preset name (see `flowact presets`) or a YAML file.")]
RoutePresetOpt = Annotated[
    str,
    typer.Option(
        "--preset",
        help="Preset name (see `flowact presets`) or a YAML file. auto: a photograph takes the photo route "
        "(photo-512: its face moves), a drawn character the toon route (toon-128: the video model draws it).",
    ),
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto | cpu | cuda (or cuda:N)")]
DtypeOpt = Annotated[
    Optional[str],
    typer.Option(
        "--dtype",
        help="float32 | bfloat16 | float16 (default: the preset's for the device; on CPU, bfloat16 only where "
        "the CPU has native bf16, else float32)",
    ),
]
WeightsOpt = Annotated[Optional[Path], typer.Option("--weights", help="Load weights from this .safetensors file.")]
RandomWeightsOpt = Annotated[bool, typer.Option("--random-weights", help="Seeded random weights (pipeline testing).")]
NoLipsOpt = Annotated[
    bool,
    typer.Option("--no-lips", help="Leave out the preset's lip refiner: the mouth as the transformer and VAE draw it."),
]
Int8Opt = Annotated[
    Int8Mode,
    typer.Option(
        "--int8",
        help="int8 transformer linears: auto (on where the transformer runs float32 on a CPU, i.e. one "
        "without native bf16) | on | off (plain float).",
    ),
]
FaceOpt = Annotated[
    Optional[int],
    typer.Option(
        "--face",
        min=1,
        help="Which face of a group photo moves: N counts the faces found left to right (default: the most "
        "confident one; the conditions line says which).",
    ),
]
ThreadsOpt = Annotated[
    Optional[int],
    typer.Option(
        "--threads", help="CPU threads (default: half the cores each for generation and the overlapped decode)."
    ),
]


def stderr_console(soft_wrap: bool = True):
    """Progress and messages go to stderr (stdout may be a video or JSON); plain text when
    stderr is no terminal; FLOWACT_QUIET=1 silences it."""
    from rich.console import Console

    return Console(
        stderr=True,
        soft_wrap=soft_wrap,
        force_terminal=None if sys.stderr.isatty() else False,
        quiet=bool(os.environ.get("FLOWACT_QUIET")),
    )


def warn_random(console, source, preset: str | None = None) -> None:
    """Say loudly when a model runs on seeded random weights."""
    if source.kind == "random":
        which = f" for {preset}" if preset else ""
        console.print(
            f"[bold yellow]WARNING: RANDOM WEIGHTS[/]{which} ({source.reason}, seed {source.seed}): "
            "the pipeline is real, the picture will not be a talking character."
        )


def load_route(
    console,
    preset,
    device: str,
    dtype,
    weights,
    random_weights: bool,
    seed: int,
    threads,
    int8: Int8Mode,
    lips: bool = True,
):
    """`routes.load_route` from the shared model options (in their declaration order), warning loudly
    when the weights are random."""
    from . import routes

    route = routes.load_route(preset, device=device, dtype=dtype, weights=weights, random_weights=random_weights,
                              seed=seed, threads=threads, lips=lips, int8=int8.value)  # fmt: skip
    warn_random(console, route.source)
    return route


def emit_json(data: dict, to_stderr: bool = False) -> None:
    print(json.dumps(data, indent=2, default=str), file=sys.stderr if to_stderr else sys.stdout)
