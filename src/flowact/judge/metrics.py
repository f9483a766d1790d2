"""The numbers `flowact eval` reports, as plain functions of arrays."""

from __future__ import annotations

import numpy as np


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    a, b = np.asarray(a[:n], float), np.asarray(b[:n], float)
    if n < 3 or a.std() < 1e-8 or b.std() < 1e-8:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


MIN_SPEECH_SECONDS = 0.5  # below this much voiced audio a correlation says nothing about lips


def speech_frames(
    samples: np.ndarray, frames: int, rate: int = 16_000, fps: float = 25.0, floor_dbfs: float = -40.0
) -> np.ndarray:
    """Per video frame: does the audio carry sound above `floor_dbfs` RMS? (bool (frames,))"""
    per = int(round(rate / fps))
    x = np.asarray(samples, float)[: frames * per]
    x = np.pad(x, (0, frames * per - len(x)))
    rms = np.sqrt(np.mean(x.reshape(frames, per) ** 2, axis=1))
    return rms > 10 ** (floor_dbfs / 20)


def lipsync(
    video_open: np.ndarray,
    audio_open: np.ndarray,
    fps: float = 25.0,
    max_offset_s: float = 1.0,
    voiced: np.ndarray | None = None,
) -> dict:
    """Correlation of mouth openness read from the video with the openness the audio implies.

    `correlation` is at offset 0 (what a viewer sees); `best_offset_s` is where the two line
    up best: positive means the video is late (its mouth moves after the sound). With
    `voiced` (per-frame bool) and less than MIN_SPEECH_SECONDS of sound, the numbers are
    None and `applicable` is False: there is nothing to lip-sync to.
    """
    if voiced is not None and voiced.sum() < MIN_SPEECH_SECONDS * fps:
        return {
            "applicable": False,
            "reason": f"no speech in the audio ({voiced.sum() / fps:.2f} s voiced)",
            "correlation": None,
            "best_offset_s": None,
            "best_correlation": None,
            "frames": int(len(voiced)),
        }
    n = min(len(video_open), len(audio_open))
    v, a = np.asarray(video_open[:n], float), np.asarray(audio_open[:n], float)
    max_lag = int(min(round(max_offset_s * fps), n // 2))
    lags = np.arange(-max_lag, max_lag + 1)
    corr = np.array([pearson(v[lag:], a[: n - lag]) if lag >= 0 else pearson(v[: n + lag], a[-lag:]) for lag in lags])
    best = int(np.argmax(corr))
    return {
        "applicable": True,
        "correlation": round(pearson(v, a), 4),
        "best_offset_s": round(float(lags[best] / fps), 3),
        "best_correlation": round(float(corr[best]), 4),
        "frames": int(n),
    }


def behaviour(pred: np.ndarray, target: np.ndarray | None, names: tuple[str, ...]) -> dict:
    """Accuracy of per-frame states read from the video against the timeline's."""
    counts = np.bincount(pred, minlength=len(names))
    out: dict = {"predicted": {names[i]: round(float(c / len(pred)), 3) for i, c in enumerate(counts) if c}}
    if target is None:
        out["accuracy"] = None
        return out
    n = min(len(pred), len(target))
    p, t = pred[:n], target[:n]
    out["accuracy"] = round(float((p == t).mean()), 4)
    out["per_state_recall"] = {names[s]: round(float((p[t == s] == s).mean()), 3) for s in np.unique(t)}
    return out


def identity(distance: np.ndarray, fps: float = 25.0, threshold: float | None = None) -> dict:
    """Appearance distance to the reference over time: mean, and slope (drift) per second."""
    d = np.asarray(distance, float)
    t = np.arange(len(d)) / fps
    slope = float(np.polyfit(t, d, 1)[0]) if len(d) >= 2 else 0.0
    second = max(1, int(fps))
    out = {
        "mean": round(float(d.mean()), 4),
        "slope_per_s": round(slope, 5),
        "max": round(float(d.max()), 4),
        "first_second": round(float(d[:second].mean()), 4),
        "last_second": round(float(d[-second:].mean()), 4),
    }
    if threshold is not None:
        out["threshold"] = threshold
        out["same_character"] = bool(d.mean() < threshold)
    return out


def flicker(frames: np.ndarray) -> dict:
    """Temporal stability on 32x32 grey block means: mean |second difference| (flicker), and |first difference|."""
    f = np.asarray(frames, np.float32).mean(axis=3)
    n, h, w = f.shape
    bh, bw = max(1, h // 32), max(1, w // 32)
    f = f[:, : bh * 32, : bw * 32].reshape(n, 32, bh, 32, bw).mean(axis=(2, 4))
    first = np.abs(np.diff(f, axis=0)).mean() if n > 1 else 0.0
    second = np.abs(f[2:] - 2 * f[1:-1] + f[:-2]).mean() if n > 2 else 0.0
    return {"second_diff": round(float(second), 3), "first_diff": round(float(first), 3)}


def body_changes(frames: np.ndarray, top: float = 0.5, low: float = 8.0, high: float = 64.0) -> dict:
    """How a drawing's body region (rows from `top` of the height down) changes from frame to frame.
    Flat-colour shapes change a pixel fully (one flat colour to another) or not at all; ghosts, smears
    and floating debris flicker by part of that. `half_change`: the share of body pixels per frame pair
    whose largest channel change lies in (`low`, `high`] of 255 (the world's own drawing: about 0.02).
    `flat`: the share of body pixels whose 3x3 neighbourhood spans less than 6 levels in every channel
    (flat colour; blur and ghosts lower it)."""
    f = np.asarray(frames, np.float32)[:, int(top * frames.shape[1]) :]
    n, h, w, _ = f.shape
    d = np.abs(np.diff(f, axis=0)).max(axis=3) if n > 1 else np.zeros((0, h, w), np.float32)
    half = float(((d > low) & (d <= high)).mean()) if n > 1 else 0.0
    p = np.pad(f, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    hi = np.max([p[:, y : y + h, x : x + w] for y in range(3) for x in range(3)], axis=0)
    lo = np.min([p[:, y : y + h, x : x + w] for y in range(3) for x in range(3)], axis=0)
    return {"half_change": round(half, 5), "flat": round(float(((hi - lo).max(axis=3) < 6).mean()), 4)}
