"""Speech as every engine of the world returns it: the voice that spoke, 16 kHz samples and
phoneme intervals. espeak-ng (speech.py, the training voices) and Festival (festival.py, held
out) both fill it; speech.py picks the engine, so these types sit apart from both."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class Voice:
    language: str  # key of speech.LANGUAGES
    name: str  # espeak-ng voice, e.g. "en-us+f3"
    rate: int  # words per minute
    pitch: int  # 0..100
    pitch_range: int  # 0..100
    engine: str = "espeak"  # "festival": a held-out engine (world/festival.py), never in training


@dataclass(frozen=True)
class Phoneme:
    start: float  # seconds
    end: float
    ipa: str  # "" for a pause


@dataclass(frozen=True)
class Speech:
    samples: np.ndarray  # (samples,) float32 mono at SAMPLE_RATE
    phonemes: tuple[Phoneme, ...]
    text: str
    voice: Voice

    @property
    def seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE
