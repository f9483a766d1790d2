"""`flowact synth` and `flowact eval` (the synthetic world and the judge). Registered by cli.py."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the world's commands to the main app."""
