"""Phonemes -> visemes: a mouth shape per video frame, with coarticulation.

Each phoneme has a target mouth shape (openness, width, roundness, lips closed, teeth on
lip) and a dominance: lips must close for m/b/p, so they dominate their neighbours, while
t/k/h barely move the lips and take the shape of the vowels around them. Shapes blend by
dominance functions that decay with distance from each phoneme's interval (Cohen-Massaro
style), slightly further ahead than behind because lips anticipate the next sound.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .speech import Phoneme
from . import FPS

MOUTH_KEYS = ("open", "width", "round", "closed", "teeth")

# (open, width, round, closed, teeth, dominance)
REST = (0.03, 0.45, 0.15, 0.6, 0.0, 0.7)
_VOWELS = {
    "a": (0.95, 0.6, 0.1),
    "ä": (0.95, 0.6, 0.1),
    "ɑ": (1.0, 0.5, 0.2),
    "æ": (0.8, 0.8, 0.0),
    "ɐ": (0.7, 0.55, 0.1),
    "ʌ": (0.7, 0.55, 0.1),
    "ɒ": (0.85, 0.4, 0.5),
    "ɔ": (0.7, 0.35, 0.7),
    "o": (0.55, 0.3, 0.85),
    "u": (0.28, 0.15, 1.0),
    "ʊ": (0.35, 0.25, 0.8),
    "ɯ": (0.3, 0.6, 0.1),
    "e": (0.5, 0.8, 0.0),
    "ɛ": (0.62, 0.75, 0.05),
    "i": (0.22, 1.0, 0.0),
    "ɪ": (0.3, 0.85, 0.0),
    "y": (0.22, 0.2, 0.95),
    "ʏ": (0.3, 0.25, 0.85),
    "ø": (0.42, 0.3, 0.8),
    "œ": (0.55, 0.35, 0.7),
    "ə": (0.42, 0.5, 0.1),
    "ɜ": (0.45, 0.5, 0.1),
    "ɚ": (0.4, 0.45, 0.3),
    "ɝ": (0.4, 0.45, 0.3),
    "ɨ": (0.3, 0.6, 0.2),
    "ʉ": (0.3, 0.3, 0.7),
    "ɤ": (0.45, 0.5, 0.2),
}
_CONSONANTS = {
    # bilabials: lips pressed together
    **{c: (0.0, 0.5, 0.2, 1.0, 0.0, 4.0) for c in "mbpɓ"},
    "β": (0.05, 0.5, 0.3, 0.8, 0.0, 2.0),
    "ɸ": (0.05, 0.5, 0.3, 0.8, 0.0, 2.0),
    # labiodentals: upper teeth on the lower lip
    **{c: (0.08, 0.55, 0.0, 0.3, 1.0, 3.0) for c in "fvʋɱ"},
    "w": (0.15, 0.12, 1.0, 0.0, 0.0, 1.5),
    "ɥ": (0.15, 0.12, 1.0, 0.0, 0.0, 1.5),
    **{c: (0.2, 0.3, 0.8, 0.0, 0.0, 1.0) for c in "ʃʒ"},
    **{c: (0.18, 0.65, 0.1, 0.0, 0.0, 0.6) for c in "szθðɕʑ"},
    **{c: (0.25, 0.6, 0.1, 0.0, 0.0, 0.25) for c in "tdnlɾɹrɬʎɲɳɭɽ"},
    **{c: (0.3, 0.55, 0.1, 0.0, 0.0, 0.15) for c in "kgɡŋxhçjʁχɣʝqɢʔɦ"},
}
_VOWEL_DOMINANCE = 0.8
_TAU_BEFORE = 0.055  # seconds: how far ahead a sound shapes the lips
_TAU_AFTER = 0.035


def _target(ipa: str) -> list[tuple[float, tuple[float, ...]]]:
    """Targets for one phoneme as (fraction of its interval, shape+dominance); diphthongs glide."""
    if not ipa or ipa in ("_", "||", "|"):
        return [(0.0, REST)]
    vowels = [ch for ch in ipa if ch in _VOWELS]
    if vowels:
        shapes = [(*_VOWELS[v], 0.0, 0.0, _VOWEL_DOMINANCE) for v in vowels[:2]]
        return [(i / len(shapes), s) for i, s in enumerate(shapes)]
    # affricates (tʃ, dʒ, ts) look like their fricative part: take the most dominant letter
    found = [_CONSONANTS[ch] for ch in ipa if ch in _CONSONANTS]
    if found:
        return [(0.0, max(found, key=lambda s: s[5]))]
    return [(0.0, (0.3, 0.55, 0.1, 0.0, 0.0, 0.2))]


def _silence(t: np.ndarray, segments: list[tuple[float, float, tuple[float, ...]]]) -> np.ndarray:
    """Seconds from each time in `t` (sorted) to the nearest segment, 0 inside one; inf without segments."""
    if not segments:
        return np.full(len(t), np.inf)
    spans = np.array(sorted((s, e) for s, e, _ in segments))
    ends = np.maximum.accumulate(spans[:, 1])  # the latest end among segments starting at or before each
    i = np.searchsorted(spans[:, 0], t, side="right")  # segments starting at or before t: [0, i)
    before = np.where(i > 0, t - ends[np.maximum(i - 1, 0)], np.inf)
    after = np.where(i < len(spans), spans[np.minimum(i, len(spans) - 1), 0] - t, np.inf)
    return np.clip(np.minimum(before, after), 0, None)


@dataclass(frozen=True)
class MouthTrack:
    """Per-frame mouth parameters, each (frames,) float32 in [0, 1]."""

    open: np.ndarray
    width: np.ndarray
    round: np.ndarray
    closed: np.ndarray
    teeth: np.ndarray

    def stack(self) -> np.ndarray:
        """(frames, 5) in MOUTH_KEYS order."""
        return np.stack([self.open, self.width, self.round, self.closed, self.teeth], axis=1)


def mouth_track(
    phonemes: list[Phoneme] | tuple[Phoneme, ...], frames: int, fps: float = FPS, offset: float = 0.0
) -> MouthTrack:
    """Visemes for `frames` video frames; phoneme times are shifted by `offset` seconds.

    Frame k shows the mouth averaged over its exposure [k/fps, (k+1)/fps).
    """
    sub = 4  # samples per frame, averaged: a frame integrates its 40 ms
    t = (np.arange(frames * sub, dtype=np.float64) + 0.5) / (fps * sub)
    num = np.zeros((len(t), 5))
    den = np.full(len(t), 1e-6)
    # silence everywhere outside speech: a rest shape with moderate dominance
    rest = np.array(REST[:5])
    segments = []
    for ph in phonemes:
        s, e = ph.start + offset, ph.end + offset
        parts = _target(ph.ipa)
        for j, (frac, shape) in enumerate(parts):
            nxt = parts[j + 1][0] if j + 1 < len(parts) else 1.0
            segments.append((s + frac * (e - s), s + nxt * (e - s), shape))
    # every silence is the rest shape, a pause between utterances as much as a clip's ends: the rest
    # weight ramps with the distance to the nearest phoneme segment (0 inside one)
    w_rest = REST[5] * np.minimum(1.0, _silence(t, segments) / 0.05)
    num += w_rest[:, None] * rest
    den += w_rest
    for s, e, shape in segments:
        lo, hi = np.searchsorted(t, s - 5 * _TAU_BEFORE), np.searchsorted(t, e + 5 * _TAU_AFTER)
        if hi <= lo:
            continue
        tt = t[lo:hi]
        narrow = 0.55 if shape[5] >= 2 else 1.0  # strong lip gestures are brief: high but narrow dominance
        dist = np.where(
            tt < s, (s - tt) / (_TAU_BEFORE * narrow), np.where(tt > e, (tt - e) / (_TAU_AFTER * narrow), 0.0)
        )
        w = shape[5] * np.exp(-dist)
        num[lo:hi] += w[:, None] * np.array(shape[:5])
        den[lo:hi] += w
    blend = num / den[:, None]
    blend = blend.reshape(frames, sub, 5).mean(axis=1)
    closed = np.clip((blend[:, 3] - 0.35) / 0.45, 0, 1)
    open_ = blend[:, 0] * (1 - closed) ** 1.5
    teeth = np.clip((blend[:, 4] - 0.25) / 0.5, 0, 1) * (1 - closed)
    f32 = lambda a: np.clip(a, 0, 1).astype(np.float32)  # noqa: E731
    return MouthTrack(f32(open_), f32(blend[:, 1]), f32(blend[:, 2]), f32(closed), f32(teeth))
