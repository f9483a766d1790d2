"""Weights derived from parameters (a refolded kernel, stacked heads), computed once for inference.

Training needs the derivation inside autograd on every call; inference reuses it until a source
parameter changes (an in-place update bumps its version; a `.to()` gives new storage). The cache
is a plain attribute on its owner: not a parameter, not in the state dict.
"""

from __future__ import annotations

from typing import Callable

import torch


def derived(owner, name: str, sources: tuple[torch.Tensor, ...], build: Callable[[], object]):
    """`build()` (of `sources`) in training; in inference, the cached result until a source changes."""
    if torch.is_grad_enabled() and any(p.requires_grad for p in sources):
        return build()
    key = tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in sources)
    cache = owner.__dict__.get(name)
    if cache is None or cache[0] != key:
        with torch.no_grad():
            cache = (key, build())
        owner.__dict__[name] = cache
    return cache[1]
