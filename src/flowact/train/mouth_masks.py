"""The world's mouth masks: a window of a clip drawn again with the mouth at rest, and the
pixels where the real frames differ from it (the open mouth). The synthetic source (data.py)
and the latent cache (cache.py) both label their clips with these."""

from __future__ import annotations

import numpy as np


def closed_frames(clip, start: int, count: int) -> np.ndarray:
    """uint8 (count, H, W, 3): frames start.. of the clip drawn with the mouth at rest (same head,
    body, eyes)."""
    from ..world.clip import REST_MOUTH

    return np.stack([clip.renderer.frame(clip.motion, REST_MOUTH, start + i) for i in range(count)])


def mouth_masks(clip, start: int, video: np.ndarray, closed: np.ndarray | None = None) -> np.ndarray:
    """(frames, H, W) float32: 1 where frame start+i differs from the same frame drawn with the
    mouth at rest (same head, body, eyes): exactly the open mouth, teeth and lips that moved.
    The world knows this; real video does not (there, `--motion-weight` is the label-free cousin)."""
    closed = closed_frames(clip, start, len(video)) if closed is None else closed
    diff = np.abs(video.astype(np.int16) - closed.astype(np.int16)).max(axis=-1)
    return (diff > 12).astype(np.float32)
