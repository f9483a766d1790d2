"""One training sample and the small pure helpers every data source shares (the synthetic
world, synth folders, real-video folders and latent caches): data.py and cache.py both
build `Sample`s from these, so neither imports the other's private helpers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..world import FPS  # the world's frame rate; presets are validated to it (config.py)


@dataclass
class Sample:
    reference: np.ndarray  # uint8 (H, W, 3)
    frames: np.ndarray | None  # uint8 (4 * latents, H, W, 3); None when served from a latent cache
    audio: np.ndarray  # float32 16 kHz covering exactly the frames
    prompts: list[str]  # one per frame
    latents: np.ndarray | None = None  # (C, 1 + latents, h, w), reference first: a latent cache's window
    mouth: np.ndarray | None = (
        None  # float32 (frames, H, W) in [0, 1]: where the mouth differs from a closed one (synthetic world only)
    )
    closed: np.ndarray | None = (
        None  # uint8 (frames, H, W, 3): the same frames drawn with the mouth at rest (synthetic world only)
    )
    visemes: np.ndarray | None = (
        None  # float32 (frames, 5) in [0, 1]: the world's mouth parameters (MOUTH_KEYS; synthetic world only)
    )


def sample_rng(seed: int, step: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(step), int(index), 0x7A1])


def cut_audio(audio: np.ndarray, start_frame: int, frames: int) -> np.ndarray:
    per = 16_000 // FPS
    seg = audio[start_frame * per : (start_frame + frames) * per]
    return np.pad(seg, (0, frames * per - len(seg))).astype(np.float32)


def prompt_at(segments, t: float) -> str:
    for s in segments:
        s = s if isinstance(s, dict) else s.as_dict()
        if s["start"] <= t < s["end"]:
            return s["prompt"]
    return ""
