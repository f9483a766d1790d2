"""Any video frame -> the judge's 128x128 input, and world labels -> the judge's targets.

The world draws characters relative to the frame height, centred, so the centre square
of any frame (128x128, 256x256, 832x480 ...) holds the character; label coordinates
(x = 0.5 + (px - W/2)/H, y = py/H) are the same in that square.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from .net import INPUT


def centre_square(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    if w > h:
        x0 = (w - h) // 2
        return frame[:, x0 : x0 + h]
    if h > w:
        y0 = (h - w) // 2
        return frame[y0 : y0 + w]
    return frame


def to_input_uint8(frame: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) -> uint8 (128, 128, 3)."""
    sq = centre_square(frame)
    if sq.shape[0] == INPUT and sq.shape[1] == INPUT:
        return np.ascontiguousarray(sq)
    return np.asarray(Image.fromarray(np.ascontiguousarray(sq)).resize((INPUT, INPUT), Image.Resampling.BILINEAR))


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (n, 128, 128, 3) -> float (n, 3, 128, 128) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)


def prepare(frames: np.ndarray) -> torch.Tensor:
    """Any uint8 frames (n, H, W, 3) -> judge input (n, 3, 128, 128)."""
    return to_tensor(np.stack([to_input_uint8(f) for f in frames]))


def label_to_input(place: np.ndarray, width: int, height: int) -> np.ndarray:
    """(..., 3) mouth places from `Renderer.mouth_place` (label coordinates of a width x height
    frame) -> the judge input's [0, 1] units (the centre square, as `to_input_uint8`)."""
    side = min(width, height)
    x = 0.5 + (place[..., 0] - 0.5) * height / side
    y = (place[..., 1] * height - (height - side) / 2) / side
    return np.stack([x, y, place[..., 2] * height / side], -1).astype(np.float32)


def targets(mouth: np.ndarray, head: np.ndarray, gaze: np.ndarray, blink: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """Per-frame regression targets (n, len(REG_KEYS)); joints (n, 6, 2) in label coordinates."""
    n = len(mouth)
    return np.concatenate(
        [
            mouth.reshape(n, 5),
            head.reshape(n, 3),
            gaze.reshape(n, 2),
            blink.reshape(n, 1),
            (joints.reshape(n, 12) - 0.5) * 2,
        ],
        1,
    ).astype(np.float32)
