"""Probe a media file with the ffmpeg binary alone (imageio-ffmpeg ships no ffprobe)."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .ffmpeg import find_ffmpeg


@dataclass(frozen=True)
class MediaInfo:
    duration: float | None  # container duration, seconds
    video_codec: str | None
    width: int | None
    height: int | None
    fps: float | None
    pix_fmt: str | None
    audio_codec: str | None
    audio_rate: int | None
    frames: int | None  # counted by demuxing every video packet
    audio_duration: float | None  # decoded audio length, seconds


def _hms(text: str) -> float:
    h, m, s = text.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def probe(path: str | Path, ffmpeg: str | None = None) -> MediaInfo:
    exe = find_ffmpeg(ffmpeg)
    info = subprocess.run([exe, "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    dur = re.search(r"Duration: (\d+:\d+:[\d.]+)", info)
    vcodec = re.search(r"Video: (\w+)", info)
    pix = re.search(r"Video: \w+[^,]*, (\w+)", info)
    size = re.search(r"Video: [^\n]*?, (\d{2,5})x(\d{2,5})", info)
    fps = re.search(r"Video: [^\n]*?, ([\d.]+) fps", info)
    audio = re.search(r"Audio: (\w+)[^,]*, (\d+) Hz", info)
    frames = audio_dur = None
    if vcodec:
        out = subprocess.run(
            [exe, "-hide_banner", "-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "null", "-"],
            capture_output=True,
            text=True,
        ).stderr
        counts = re.findall(r"frame=\s*(\d+)", out)
        frames = int(counts[-1]) if counts else None
    if audio:
        out = subprocess.run(
            [exe, "-hide_banner", "-i", str(path), "-map", "0:a:0", "-f", "null", "-"], capture_output=True, text=True
        ).stderr
        times = re.findall(r"time=\s*(\d+:\d+:[\d.]+)", out)
        audio_dur = _hms(times[-1]) if times else None
    return MediaInfo(
        duration=_hms(dur.group(1)) if dur else None,
        video_codec=vcodec.group(1) if vcodec else None,
        width=int(size.group(1)) if size else None,
        height=int(size.group(2)) if size else None,
        fps=float(fps.group(1)) if fps else None,
        pix_fmt=pix.group(1) if pix else None,
        audio_codec=audio.group(1) if audio else None,
        audio_rate=int(audio.group(2)) if audio else None,
        frames=frames,
        audio_duration=audio_dur,
    )


def read_frames(path: str | Path, ffmpeg: str | None = None) -> np.ndarray:
    """Decode every video frame of a file to uint8 (frames, height, width, 3)."""
    meta = probe(path, ffmpeg)
    if not meta.width:
        raise ValueError(f"{path}: no video stream")
    raw = subprocess.run(
        [
            find_ffmpeg(ffmpeg),
            "-hide_banner",
            "-loglevel",
            "error",
            "-i",
            str(path),
            "-fps_mode",
            "passthrough",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "pipe:1",
        ],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, meta.height, meta.width, 3)
