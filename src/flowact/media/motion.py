"""A per-frame motion track from a file (`flowact render --motion FILE`): what the motion engine would
make, given instead (animation from elsewhere, retargeting, the world's own labels for tests).

One row per video frame (25 per second), the 16 numbers of the motion contract in
world/motion_vector.py's MOTION_KEYS order (mouth_open ... body_shrug), each within its range:

    .npy     a float array (frames, 16)
    .csv     a header row naming the 16 keys (any order), then one row per frame
    .jsonl   one JSON value per line: an object with the 16 keys, or a list of 16 numbers

A renderer moves the picture by `motion - rest pose`, so the track is absolute: the world's
neutral pose (mouth at rest, facing the camera) leaves the picture as it is.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from ..errors import FlowactError
from ..world.motion_vector import HIGH, LOW, MOTION_DIM, MOTION_KEYS

FORMATS = (".npy", ".csv", ".jsonl")
SLACK = 1e-3  # values this far outside a key's range are rounding, clipped in silence


def load_motion(path: str | Path) -> np.ndarray:
    """(frames, 16) float32; a bad file is a FlowactError naming it (and the line, for text formats)."""
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
    if a.ndim != 2 or a.shape[1] != MOTION_DIM or not np.issubdtype(a.dtype, np.number):
        raise FlowactError(f"the array is {a.dtype} {a.shape}; a motion track is (frames, {MOTION_DIM}) numbers",
                           path=path)  # fmt: skip
    return a, [f"frame {i}" for i in range(len(a))]


def _csv(path: Path) -> tuple[list, list]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or sorted(h.strip() for h in header) != sorted(MOTION_KEYS):
            missing = sorted(set(MOTION_KEYS) - {h.strip() for h in header or []})
            raise FlowactError(f"line 1: the header must name the {MOTION_DIM} motion keys (missing: {missing})",
                               path=path)  # fmt: skip
        order = [[h.strip() for h in header].index(k) for k in MOTION_KEYS]
        rows, where = [], []
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                values = [float(row[i]) for i in order]
            except (ValueError, IndexError) as exc:
                raise FlowactError(f"line {line}: {MOTION_DIM} numbers expected ({exc})", path=path) from exc
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
            values = [float(v[k]) for k in MOTION_KEYS] if isinstance(v, dict) else [float(x) for x in v]
        except (ValueError, KeyError, TypeError) as exc:
            what = f"an object with the {MOTION_DIM} motion keys or a list of numbers"
            raise FlowactError(f"line {line}: {what} ({exc!r})", path=path) from exc
        if len(values) != MOTION_DIM:
            raise FlowactError(f"line {line}: {len(values)} numbers, a frame has {MOTION_DIM}", path=path)
        rows.append(values)
        where.append(f"line {line}")
    return rows, where


def _checked(a: np.ndarray, where: list[str], path: Path) -> np.ndarray:
    bad = ~np.isfinite(a)
    if bad.any():
        f, k = np.argwhere(bad)[0]
        raise FlowactError(f"{where[f]}: {MOTION_KEYS[k]} is not a number", path=path)
    out = (a < LOW - SLACK) | (a > HIGH + SLACK)
    if out.any():
        f, k = np.argwhere(out)[0]
        raise FlowactError(f"{where[f]}: {MOTION_KEYS[k]} = {a[f, k]:g} is outside {LOW[k]:g}..{HIGH[k]:g}",
                           path=path)  # fmt: skip
    return np.clip(a, LOW, HIGH)
