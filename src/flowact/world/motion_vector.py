"""The motion space: one float vector per video frame, the contract between the motion engine
(which generates it from speech and behaviour) and the renderers that move a picture by it.

The world labels every frame's motion exactly, so the vector is read straight from a clip:
mouth shape (visemes), head rotation, gaze, eyelids, brows, smile and the body's sway,
breathing and shrug. Arms are not in it: a portrait photo shows no hands.

    index  key          range      meaning
    0-4    mouth_*      0..1       open, width, round, closed, teeth (world/visemes.py MOUTH_KEYS)
    5-7    head_*       -1..1      yaw, pitch, roll
    8-9    gaze_*       -1..1      x, y
    10     blink        0..1       eyelid closure
    11     brow         -1..1      raise
    12     smile        ~-0.3..1
    13-15  body_*       ~-1..1     sway x, breathing lift, shoulder lift (shrug)
"""

from __future__ import annotations

import numpy as np

from .visemes import MOUTH_KEYS

MOTION_KEYS: tuple[str, ...] = (
    *(f"mouth_{k}" for k in MOUTH_KEYS),
    "head_yaw",
    "head_pitch",
    "head_roll",
    "gaze_x",
    "gaze_y",
    "blink",
    "brow",
    "smile",
    "body_sway",
    "body_breath",
    "body_shrug",
)
MOTION_DIM = len(MOTION_KEYS)
# the contract's range of each key, by its group (the table above); a generated motion is clipped to it
RANGES = {"mouth": (0.0, 1.0), "head": (-1.0, 1.0), "gaze": (-1.0, 1.0), "blink": (0.0, 1.0), "brow": (-1.0, 1.0),
          "smile": (-0.3, 1.0), "body": (-1.0, 1.0)}  # fmt: skip
LOW = np.array([RANGES[k.split("_")[0]][0] for k in MOTION_KEYS], np.float32)
HIGH = np.array([RANGES[k.split("_")[0]][1] for k in MOTION_KEYS], np.float32)
MOUTH = slice(0, 5)
HEAD = slice(5, 8)
GAZE = slice(8, 10)
BLINK, BROW, SMILE = 10, 11, 12
BODY = slice(13, 16)


def index(key: str) -> int:
    return MOTION_KEYS.index(key)


def neutral_vector() -> np.ndarray:
    """The reference pose: facing the camera, eyes open, lips at rest. (MOTION_DIM,) float32."""
    from .clip import REST_MOUTH  # clip imports the drawing code: only when asked

    v = np.zeros(MOTION_DIM, np.float32)
    v[MOUTH] = REST_MOUTH
    return v


def reference_motion(clip) -> np.ndarray:
    """The motion of a clip's reference frame (its character's neutral pose: a character may
    smile at rest), (MOTION_DIM,) float32. Renderers move a picture by `motion - reference`."""
    from .behaviour import neutral_motion
    from .clip import REST_MOUTH

    m = neutral_motion(clip.character)
    parts = [REST_MOUTH, m.head[0], m.gaze[0], m.blink[:1], m.brow[:1], m.smile[:1], m.body[0]]
    return np.concatenate([np.asarray(p, np.float32).reshape(-1) for p in parts])


def clip_motion(clip) -> np.ndarray:
    """A world clip's per-frame motion, (frames, MOTION_DIM) float32, in MOTION_KEYS order."""
    m = clip.motion
    out = np.concatenate(
        [
            clip.mouth.stack(),
            m.head,
            m.gaze,
            m.blink[:, None],
            m.brow[:, None],
            m.smile[:, None],
            m.body,
        ],
        axis=1,
    ).astype(np.float32)
    assert out.shape[1] == MOTION_DIM, out.shape
    return out
