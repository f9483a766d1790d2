"""Batch rendering: one model load, many jobs (`flowact render --manifest`)."""

from __future__ import annotations

from .errors import FlowactError


def cli_manifest(**options) -> int:
    raise FlowactError("batch rendering (--manifest) is not implemented yet")
