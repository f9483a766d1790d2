"""3D rotary positions (time, height, width) as per-token cos/sin tables.

A token at (t, h, w) gets, for its head dim's D/2 rotation pairs, angles
[t * f_time | h * f_height | w * f_width] where each axis has its own geometric
frequency ladder. Tables are computed once per preset (static positions), never per step.
"""

from __future__ import annotations

import torch


def axis_frequencies(pairs: int, theta: float) -> torch.Tensor:
    """(pairs,) frequencies theta^(-2i/(2*pairs)), the usual RoPE ladder for one axis."""
    return theta ** (-torch.arange(pairs, dtype=torch.float64) / pairs)


def rope_angles(positions: torch.Tensor, axes: tuple[int, int, int], theta: float) -> torch.Tensor:
    """positions: (tokens, 3) float (t, h, w) -> angles (tokens, sum(axes))."""
    parts = [positions[:, i : i + 1].double() * axis_frequencies(n, theta)[None] for i, n in enumerate(axes)]
    return torch.cat(parts, dim=1)


def rope_tables(positions: torch.Tensor, axes: tuple[int, int, int], theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin), each (tokens, head_dim/2) float32."""
    ang = rope_angles(positions, axes, theta)
    return ang.cos().float(), ang.sin().float()


def grid_positions(time: float, height: int, width: int) -> torch.Tensor:
    """(height*width, 3) positions of one latent frame's patch tokens, row-major."""
    hh, ww = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    return torch.stack([torch.full_like(hh, 0).float() + time, hh.float(), ww.float()], dim=-1).reshape(-1, 3)


def time_tables(times: torch.Tensor, pairs: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """1-D RoPE in time (the motion MMDiT: one token per frame): times (..., tokens) -> (cos, sin),
    each (..., tokens, pairs) float32."""
    ang = times.double()[..., None] * axis_frequencies(pairs, theta)
    return ang.cos().float(), ang.sin().float()
