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

from .options import Int8Mode

__all__ = ["Fit", "Int8Mode", "Planner", "emit_json", "stderr_console", "warn_random"]


class Fit(str, Enum):
    """How the reference picture fills the frame (media/image.py)."""

    cover = "cover"
    contain = "contain"


class Planner(str, Enum):
    """Who picks the live stream's states: `rules` from voice activity, `none` = only commands."""

    rules = "rules"
    none = "none"


def stderr_console(soft_wrap: bool = True):
    """Progress and messages go to stderr (stdout may be a video or JSON); plain text when
    stderr is no terminal; FLOWACT_QUIET=1 silences it."""
    from rich.console import Console

    return Console(stderr=True, soft_wrap=soft_wrap, force_terminal=None if sys.stderr.isatty() else False,
                   quiet=bool(os.environ.get("FLOWACT_QUIET")))


def warn_random(console, source) -> None:
    """Say loudly when a model runs on seeded random weights."""
    if source.kind == "random":
        console.print(f"[bold yellow]WARNING: RANDOM WEIGHTS[/] ({source.reason}, seed {source.seed}): "
                      "the pipeline is real, the picture will not be a talking character.")


def emit_json(data: dict, to_stderr: bool = False) -> None:
    print(json.dumps(data, indent=2, default=str), file=sys.stderr if to_stderr else sys.stdout)
