"""Flow matching (rectified flow): x_t = (1 - t) x0 + t noise, the model predicts
v = noise - x0, and sampling integrates dx/dt = v from t = 1 down to t = 0 (Euler)."""

from __future__ import annotations

from typing import Callable

import torch

from ..config import shifted_timesteps

__all__ = ["EulerSampler", "interpolate", "shifted_timesteps", "velocity_target"]


def interpolate(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """x_t for t broadcast over the leading batch dim."""
    if isinstance(t, torch.Tensor):
        t = t.view(-1, *([1] * (x0.dim() - 1)))
    return (1 - t) * x0 + t * noise


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    return noise - x0


class EulerSampler:
    """Integrates one chunk from noise to clean over a fixed step list (default 3 steps).
    The per-step timestep tensors are built once, not per step."""

    def __init__(self, timesteps: tuple[float, ...], batch: int, device):
        self.timesteps = tuple(timesteps)
        self.t = [torch.full((batch,), t, device=device) for t in self.timesteps]

    @property
    def nfe(self) -> int:
        return len(self.timesteps) - 1

    def sample(
        self, velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], noise: torch.Tensor
    ) -> torch.Tensor:
        x = noise
        for i in range(self.nfe):
            v = velocity(x, self.t[i])
            x = x + (self.timesteps[i + 1] - self.timesteps[i]) * v
        return x
