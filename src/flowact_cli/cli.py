"""The command line: parse, call the library, print. Thin by design."""

from __future__ import annotations

import sys

import typer

from . import cli_world
from .errors import FlowactError

app = typer.Typer(
    name="flowact",
    help="Real-time talking-humanoid video from one picture and a speech track (FlowAct-R1).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
cli_world.register(app)


def main() -> None:
    try:
        app()
    except FlowactError as exc:
        print(f"flowact: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
