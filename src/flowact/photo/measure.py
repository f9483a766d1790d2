"""Measuring rendered frames: re-read them with the same face mesh model and report what moved.

`measure_frames` tracks the mesh through a video (the first frame is detected, each later one
is cropped around the previous frame's mesh) and returns per-frame lip gap, head turn, eye
openness, shape and colour drift against a reference, plus the landmarks' temporal jitter.
`envelope` and `lag_correlation` line the lip gap up against the speech's loudness. All lengths
are in inter-ocular distances (IOD) of the reference, so numbers compare across photo sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import face as F

_LIP_PAIRS = ((13, 14), (82, 87), (312, 317))  # upper/lower inner-lip points at the middle of the mouth
_LID_PAIRS = ((159, 145), (158, 153), (160, 144), (386, 374), (385, 380), (387, 373))
_SKIN = (50, 280, 101, 330, 205, 425, 4, 5, 195)  # cheeks and nose: stable face colour


@dataclass(frozen=True)
class FrameMeasures:
    """Per frame (frames,): lip_gap (inner-lip distance / IOD), head_turn (frames, 2) nose tip
    minus eye midpoint in the eye-aligned frame / IOD (x: yaw, y: pitch), eye_open (lid distance
    / eye width), shape_drift (mean landmark distance to the reference shape after removing
    position, scale and roll, in IOD), colour_drift (mean abs RGB difference of the skin patch
    against the reference, 0..255), presence (face score). jitter: mean landmark acceleration
    (IOD per frame^2) after removing the same similarity, a measure of shimmer."""

    lip_gap: np.ndarray
    head_turn: np.ndarray
    eye_open: np.ndarray
    shape_drift: np.ndarray
    colour_drift: np.ndarray
    presence: np.ndarray
    jitter: float


def _normalised(points: np.ndarray) -> tuple[np.ndarray, float]:
    """(468, 2) landmarks with eye midpoint at 0, eyes along +x, IOD 1; also the IOD."""
    p = points[:, :2]
    mesh = F.FaceMesh(points, (0, 0, 0, 0), 1.0)
    e = mesh.eye_centres
    iod = float(np.linalg.norm(e[1] - e[0]))
    ax = (e[1] - e[0]) / max(iod, 1e-6)
    rot = np.array([[ax[0], ax[1]], [-ax[1], ax[0]]])
    return (p - e.mean(0)) @ rot.T / max(iod, 1e-6), iod


def _skin_colour(frame: np.ndarray, points: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    xy = np.clip(np.round(points[list(_SKIN), :2]).astype(int), 0, [w - 1, h - 1])
    patch = [frame[max(0, y - 1) : y + 2, max(0, x - 1) : x + 2].reshape(-1, 3) for x, y in xy]
    return np.concatenate(patch).astype(np.float32).mean(0)


def track_meshes(frames: np.ndarray, first: F.FaceMesh | None = None) -> list[F.FaceMesh]:
    """Meshes of (frames, H, W, 3) uint8 video frames, tracked from `first` (else detected)."""
    prev = first if first is not None else F.analyse(frames[0], "frame 0")
    out = []
    for f in frames:
        prev = F.track(f, prev)
        out.append(prev)
    return out


def measure_frames(
    frames: np.ndarray, reference: np.ndarray | None = None, reference_mesh: F.FaceMesh | None = None
) -> FrameMeasures:
    """frames: (frames, H, W, 3) uint8; reference: (H, W, 3) uint8 the rest-pose picture the
    drift is measured against (default: the first frame)."""
    frames = np.asarray(frames)
    ref_img = frames[0] if reference is None else np.asarray(reference)
    ref_mesh = reference_mesh if reference_mesh is not None else F.analyse(ref_img, "reference")
    meshes = track_meshes(frames, ref_mesh)
    ref_shape, _ = _normalised(ref_mesh.points)
    ref_col = _skin_colour(ref_img, ref_mesh.points)
    n = len(meshes)
    lip, eye, shape, colour, pres = (np.zeros(n, np.float32) for _ in range(5))
    turn = np.zeros((n, 2), np.float32)
    norm = np.zeros((n, 468, 2), np.float32)
    for i, m in enumerate(meshes):
        q, iod = _normalised(m.points)
        norm[i] = q
        lip[i] = np.mean([np.linalg.norm(q[b] - q[a]) for a, b in _LIP_PAIRS])
        widths = [np.linalg.norm(q[33] - q[133]), np.linalg.norm(q[263] - q[362])]
        lids = [np.linalg.norm(q[b] - q[a]) for a, b in _LID_PAIRS]
        eye[i] = np.mean(lids) / np.mean(widths)
        turn[i] = q[F.NOSE_TIP]
        shape[i] = np.linalg.norm(q - ref_shape, axis=1).mean()
        colour[i] = np.abs(_skin_colour(frames[i], m.points) - ref_col).mean()
        pres[i] = m.score
    jitter = float(np.linalg.norm(np.diff(norm, 2, axis=0), axis=2).mean()) if n > 2 else 0.0
    return FrameMeasures(lip, turn, eye, shape, colour, pres, jitter)


def envelope(samples16k: np.ndarray, fps: float = 25) -> np.ndarray:
    """Loudness per video frame: RMS of the 16 kHz samples in each frame's window, (frames,)."""
    x = np.asarray(samples16k, np.float32).reshape(-1)
    hop = 16000 / fps
    n = int(np.ceil(len(x) / hop))
    edges = np.minimum(np.round(np.arange(n + 1) * hop).astype(int), len(x))
    sq = np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)])
    counts = np.maximum(np.diff(edges), 1)
    return np.sqrt((sq[edges[1:]] - sq[edges[:-1]]) / counts).astype(np.float32)


def lag_correlation(a: np.ndarray, b: np.ndarray, max_lag: int) -> tuple[float, int, float]:
    """Pearson r of a[t] with b[t + lag] for lag in -max_lag..max_lag (a positive lag: b comes
    later). Returns (r at lag 0, best lag in frames, r at the best lag)."""
    a = np.asarray(a, np.float64).reshape(-1)
    b = np.asarray(b, np.float64).reshape(-1)
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]

    def r(lag: int) -> float:
        x, y = (a[: n - lag], b[lag:]) if lag >= 0 else (a[-lag:], b[: n + lag])
        if len(x) < 3 or x.std() < 1e-12 or y.std() < 1e-12:
            return 0.0
        return float(np.corrcoef(x, y)[0, 1])

    lags = range(-max_lag, max_lag + 1)
    rs = [r(k) for k in lags]
    best = int(np.argmax(rs))
    return r(0), best - max_lag, rs[best]
