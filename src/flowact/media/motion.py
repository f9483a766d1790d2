"""A per-frame motion track from a file (`flowact render --motion FILE`): what the motion engine would
make, given instead (animation from elsewhere, retargeting, the world's own labels for tests).

One row per video frame (25 per second), the 16 numbers of the motion contract in
world/motion_vector.py's MOTION_KEYS order (mouth_open ... body_shrug), each within its range, and
optionally the 8 arm numbers after them (ARM_KEYS: left_elbow_x ... right_wrist_y, each elbow and wrist
minus its shoulder in units of the arm's reach, -1..1; the toon route's video model reads them, the
photo route has no arms to move; without them the arms rest):

    .npy     a float array (frames, 16) or (frames, 24)
    .csv     a header row naming the 16 keys (any order; the 8 arm keys too, or none of them), then one
             row per frame
    .jsonl   one JSON value per line: an object with the 16 keys (and the 8 arm keys), or a list of 16
             (or 24) numbers; every line alike

A renderer moves the picture by `motion - rest pose`, so the track is absolute: the world's
neutral pose (mouth at rest, facing the camera) leaves the picture as it is.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from ..errors import FlowactError
from ..world.motion_vector import ARM_KEYS, MOTION_DIM, MOTION_KEYS, VIDEO_HIGH, VIDEO_LOW, VIDEO_MOTION_DIM

WIDTHS = (MOTION_DIM, VIDEO_MOTION_DIM)  # a frame's numbers: the contract, or with the arms
ALL_KEYS = MOTION_KEYS + ARM_KEYS

FORMATS = (".npy", ".csv", ".jsonl")
SLACK = 1e-3  # values this far outside a key's range are rounding, clipped in silence


def load_motion(path: str | Path) -> np.ndarray:
    """(frames, 16) or (frames, 24) float32; a bad file is a FlowactError naming it (and the line, for
    text formats)."""
    path = Path(path)
    if not path.is_file():
        raise FlowactError("motion track not found", path=path)
    if path.suffix not in FORMATS:
        raise FlowactError(f"a motion track is {', '.join(FORMATS)} (got {path.suffix or 'no extension'})", path=path)
    rows, where = {".npy": _npy, ".csv": _csv, ".jsonl": _jsonl}[path.suffix](path)
    if len(rows) == 0:
        raise FlowactError("the motion track has no frames", path=path)
    return _checked(np.asarray(rows, np.float32), where, path)


def _npy(path: Path) -> tuple[np.ndarray, list]:
    try:
        a = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise FlowactError(f"not a readable .npy array ({exc})", path=path) from exc
    if a.ndim != 2 or a.shape[1] not in WIDTHS or not np.issubdtype(a.dtype, np.number):
        raise FlowactError(f"the array is {a.dtype} {a.shape}; a motion track is (frames, {MOTION_DIM}) numbers, "
                           f"or (frames, {WIDTHS[1]}) with the arms", path=path)  # fmt: skip
    return a, [f"frame {i}" for i in range(len(a))]


def _csv(path: Path) -> tuple[list, list]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        names = [h.strip() for h in header or []]
        keys = MOTION_KEYS + (ARM_KEYS if set(ARM_KEYS) & set(names) else ())
        if sorted(names) != sorted(keys):
            missing, extra = sorted(set(keys) - set(names)), sorted(set(names) - set(keys))
            raise FlowactError(f"line 1: the header must name the {MOTION_DIM} motion keys, and the "
                               f"{len(ARM_KEYS)} arm keys or none (missing: {missing}, unknown: {extra})",
                               path=path)  # fmt: skip
        order = [names.index(k) for k in keys]
        rows, where = [], []
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                values = [float(row[i]) for i in order]
            except (ValueError, IndexError) as exc:
                raise FlowactError(f"line {line}: {len(keys)} numbers expected ({exc})", path=path) from exc
            rows.append(values)
            where.append(f"line {line}")
    return rows, where


def _jsonl(path: Path) -> tuple[list, list]:
    rows, where = [], []
    for line, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            v = json.loads(text)
            if isinstance(v, dict):
                keys = MOTION_KEYS + (ARM_KEYS if set(ARM_KEYS) & set(v) else ())
                values = [float(v[k]) for k in keys]
            else:
                values = [float(x) for x in v]
        except (ValueError, KeyError, TypeError) as exc:
            what = f"an object with the {MOTION_DIM} motion keys or a list of numbers"
            raise FlowactError(f"line {line}: {what} ({exc!r})", path=path) from exc
        width = len(rows[0]) if rows else len(values)
        if len(values) not in WIDTHS or len(values) != width:
            want = f"{width}, as the first frame" if rows else f"{MOTION_DIM} (or {WIDTHS[1]} with the arms)"
            raise FlowactError(f"line {line}: {len(values)} numbers, a frame has {want}", path=path)
        rows.append(values)
        where.append(f"line {line}")
    return rows, where


def _checked(a: np.ndarray, where: list[str], path: Path) -> np.ndarray:
    n = a.shape[1]
    low, high = VIDEO_LOW[:n], VIDEO_HIGH[:n]
    bad = ~np.isfinite(a)
    if bad.any():
        f, k = np.argwhere(bad)[0]
        raise FlowactError(f"{where[f]}: {ALL_KEYS[k]} is not a number", path=path)
    out = (a < low - SLACK) | (a > high + SLACK)
    if out.any():
        f, k = np.argwhere(out)[0]
        raise FlowactError(f"{where[f]}: {ALL_KEYS[k]} = {a[f, k]:g} is outside {low[k]:g}..{high[k]:g}",
                           path=path)  # fmt: skip
    return np.clip(a, low, high)
