"""Load any speech track (wav, flac, ogg, mp3, ... at any rate, mono or stereo) as 16 kHz mono float32."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import FlowactError

SAMPLE_RATE = 16_000
SILENCE_PEAK = 1e-4  # below this peak amplitude a track carries no speech to animate


@dataclass(frozen=True)
class Audio:
    samples: np.ndarray  # (samples,) float32 mono at `rate`
    rate: int
    source_rate: int
    source_channels: int

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate


def _decode_with_ffmpeg(path: Path) -> tuple[np.ndarray, int, int]:
    from .ffmpeg import find_ffmpeg

    proc = subprocess.run(
        [
            find_ffmpeg(),
            "-hide_banner",
            "-loglevel",
            "error",
            "-i",
            str(path),
            "-vn",
            "-ac",
            "1",
            "-ar",
            str(SAMPLE_RATE),
            "-f",
            "f32le",
            "pipe:1",
        ],
        capture_output=True,
    )
    if proc.returncode != 0:
        msg = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise FlowactError(f"cannot decode audio ({msg[-1] if msg else 'ffmpeg failed'})", path=path)
    return np.frombuffer(proc.stdout, np.float32).copy(), SAMPLE_RATE, 1


def load_audio(path: str | Path, rate: int = SAMPLE_RATE, *, allow_silent: bool = False) -> Audio:
    """Decode, downmix and resample (soxr). Raises FlowactError for missing, corrupt, empty or silent audio."""
    import soundfile as sf
    import soxr

    path = Path(path)
    if not path.exists():
        raise FlowactError("audio file not found", path=path)
    if not path.is_file():
        raise FlowactError("audio path is not a file", path=path)
    try:
        data, source_rate = sf.read(str(path), dtype="float32", always_2d=True)
        channels = data.shape[1]
        mono = data.mean(axis=1)
    except sf.LibsndfileError:
        # libsndfile lacks some containers (m4a, aac, ...): let ffmpeg try before giving up.
        mono, source_rate, channels = _decode_with_ffmpeg(path)
    except OSError as exc:
        raise FlowactError(f"cannot read audio ({exc.strerror or exc})", path=path) from exc
    if mono.size == 0:
        raise FlowactError("audio is empty (zero length)", path=path)
    if not np.isfinite(mono).all():
        raise FlowactError("audio contains NaN or infinite samples", path=path)
    if source_rate != rate:
        mono = soxr.resample(mono, source_rate, rate, quality="HQ").astype(np.float32)
    if mono.size < rate // 25:
        raise FlowactError(
            f"audio is too short ({mono.size / rate * 1000:.0f} ms; need at least one frame, 40 ms)", path=path
        )
    if not allow_silent and float(np.abs(mono).max()) < SILENCE_PEAK:
        raise FlowactError("audio is silent (peak below -80 dBFS); nothing to lip-sync", path=path)
    return Audio(np.ascontiguousarray(mono, dtype=np.float32), rate, int(source_rate), int(channels))


def write_wav(path: str | Path, samples: np.ndarray, rate: int) -> None:
    import soundfile as sf

    sf.write(str(path), np.clip(samples, -1, 1), rate, subtype="PCM_16")
