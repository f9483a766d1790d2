"""Choices shared by the commands (light: no torch import, so `--help` stays fast)."""

from __future__ import annotations

from enum import Enum


class Int8Mode(str, Enum):
    """int8 transformer linears (model/quant.py): auto = on where the transformer runs in
    float32 on a CPU (a CPU without native bf16), on, off."""

    auto = "auto"
    on = "on"
    off = "off"
