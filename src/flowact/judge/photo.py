"""`flowact eval` for the photo route: the judge network knows only the synthetic world, so a
photograph's video is read back by the face-landmark model that built its rig (photo/measure.py):

- lip-sync: the inner-lip gap per frame against the speech's loudness envelope (correlation at
  offset 0 and the best offset within +-0.4 s; + means the video is late);
- motion: how much the head turns and the eyes blink (a frozen photo scores 0);
- identity: the face's landmark shape and skin colour against the reference photo's, mean and
  slope over time (drift);
- jitter: landmark acceleration, a measure of shimmer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FPS = 25.0
MAX_LAG = 10  # frames: +-0.4 s
MOUTH_STILL = 0.006  # lip-gap std (eye distances) below which the mouth does not move


def _slope(values: np.ndarray) -> float:
    if len(values) < 3:
        return 0.0
    t = np.arange(len(values)) / FPS
    return float(np.polyfit(t, values, 1)[0])


def evaluate_photo_frames(frames: np.ndarray, audio: np.ndarray, reference: np.ndarray) -> dict:
    """The report for uint8 frames (n, H, W, 3) at 25 fps, 16 kHz speech, the reference photo
    (H', W', 3) uint8 (resized to the frames' size)."""
    from PIL import Image

    from ..photo.measure import envelope, lag_correlation, measure_frames

    h, w = frames.shape[1:3]
    if reference.shape[:2] != (h, w):
        reference = np.asarray(Image.fromarray(reference).resize((w, h), Image.Resampling.LANCZOS))
    m = measure_frames(frames, reference=reference)
    env = envelope(audio, FPS)
    env = np.pad(env, (0, max(0, len(frames) - len(env))))[: len(frames)]
    # a still mouth's gap is landmark noise (std ~0.002 on a frozen photo): no correlation to read
    moves = bool(m.lip_gap.std() > MOUTH_STILL)
    r0, lag, rbest = lag_correlation(env, m.lip_gap, MAX_LAG) if moves else (0.0, 0, 0.0)
    voiced = env > max(0.02, 0.25 * float(env.max(initial=0.0)))
    r_voiced = lag_correlation(env[voiced], m.lip_gap[voiced], 0)[0] if moves and voiced.sum() > 10 else None
    return {
        "route": "photo",
        "frames": int(len(frames)),
        "fps": FPS,
        "seconds": round(len(frames) / FPS, 3),
        "lipsync": {
            "applicable": bool(env.std() > 1e-4),
            "mouth_moves": moves,
            "measure": "inner-lip gap (face landmarks) vs loudness envelope",
            "correlation": round(r0, 4),
            "best_offset_s": round(lag / FPS, 3),
            "best_correlation": round(rbest, 4),
            "correlation_within_speech": None if r_voiced is None else round(r_voiced, 4),
            "lip_gap_mean": round(float(m.lip_gap.mean()), 4),
            "lip_gap_std": round(float(m.lip_gap.std()), 4),
        },
        "motion": {
            "head_turn_std": round(float(m.head_turn.std(0).mean()), 4),
            "eye_open_std": round(float(m.eye_open.std()), 4),
        },
        "identity": {
            "shape_mean": round(float(m.shape_drift.mean()), 4),
            "shape_slope_per_s": round(_slope(m.shape_drift), 5),
            "colour_mean": round(float(m.colour_drift.mean()), 3),
            "colour_slope_per_s": round(_slope(m.colour_drift), 4),
            "face_presence_min": round(float(m.presence.min()), 3),
        },
        "jitter": round(m.jitter, 5),
    }


def evaluate_photo_video(video: str | Path, audio: str | Path, reference: str | Path) -> dict:
    from ..media.audio import load_audio
    from ..media.image import read_image
    from .evaluate import _read_frames

    frames, source_fps = _read_frames(Path(video))
    samples = load_audio(audio, 16_000, allow_silent=True).samples
    report = evaluate_photo_frames(frames, samples, read_image(reference))
    report["video"] = str(video)
    report["source_fps"] = source_fps
    return report
