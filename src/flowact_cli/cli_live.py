"""`flowact live` (interactive streaming). Registered by cli.py."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the live command to the main app."""
