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

The drawn character's video model (the toon route) reads more: the same 16 numbers and its arms,
`ARM_KEYS` (each arm's elbow and wrist relative to its shoulder, in units of the arm's reach, so
that they mean the same pose on a long or a short arm). `video_motion` gives both, each relative to
the clip's rest pose: what the video model is conditioned on (zeros: the reference pose).
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


ARM_KEYS: tuple[str, ...] = tuple(f"{arm}_{joint}_{axis}" for arm in ("left", "right") for joint in ("elbow", "wrist")
                                  for axis in "xy")  # fmt: skip
VIDEO_MOTION_DIM = MOTION_DIM + len(ARM_KEYS)  # what the toon route's video model reads per frame
# the arms at rest (hanging, hands beside the hips), the mean over the world's characters (each within
# 0.05 of it, tests/test_motion_video.py): a track's arms are moved by their difference from it
REST_ARMS = np.array([-0.195, 0.494, -0.086, 0.95, 0.195, 0.494, 0.086, 0.95], np.float32)
# the ranges of all 24 numbers (the contract's 16, then the arms: within reach, -1..1)
VIDEO_LOW = np.concatenate([LOW, np.full(len(ARM_KEYS), -1.0, np.float32)])
VIDEO_HIGH = np.concatenate([HIGH, np.full(len(ARM_KEYS), 1.0, np.float32)])


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


def arm_vector(joints: np.ndarray, character) -> np.ndarray:
    """World joints (frames, 2 arms, 3 [shoulder, elbow, wrist], 2 xy) -> (frames, 8) in ARM_KEYS order:
    elbow and wrist minus the shoulder, over the arm's reach (upper arm + forearm)."""
    reach = character.upper_arm + character.forearm
    rel = (joints[:, :, 1:] - joints[:, :, :1]) / reach  # (frames, 2, 2, 2)
    return rel.reshape(len(joints), -1).astype(np.float32)


def clip_arms(clip) -> np.ndarray:
    """A world clip's arms, (frames, 8) float32 in ARM_KEYS order (absolute, as a track gives them)."""
    return arm_vector(clip.motion.joints, clip.character)


def rest_arms(character) -> np.ndarray:
    """A character's arms at rest, (8,) float32 (within 0.05 of REST_ARMS)."""
    from .behaviour import neutral_motion

    return arm_vector(neutral_motion(character).joints, character)[0]


def video_motion(clip) -> np.ndarray:
    """A world clip's per-frame motion for the video model, (frames, VIDEO_MOTION_DIM) float32: the 16
    numbers of the contract minus the reference frame's, then the arms minus the rest pose's."""
    arms = clip_arms(clip) - rest_arms(clip.character)
    return np.concatenate([clip_motion(clip) - reference_motion(clip), arms], axis=1).astype(np.float32)


def video_input(motion: np.ndarray) -> np.ndarray:
    """A motion track's frames (frames, 16: the contract; or 24: with the arms, ARM_KEYS) -> what the video
    model reads (frames, 24): each number minus the rest pose's (arms at rest where the track has none)."""
    out = np.zeros((len(motion), VIDEO_MOTION_DIM), np.float32)
    out[:, :MOTION_DIM] = motion[:, :MOTION_DIM] - neutral_vector()
    if motion.shape[1] > MOTION_DIM:
        out[:, MOTION_DIM:] = motion[:, MOTION_DIM:] - REST_ARMS
    return out
