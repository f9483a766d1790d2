"""ffmpeg fed live with video frames (stdin) and PCM audio (a second pipe).

`VideoWriter` muxes a finished audio file; live speech is made as the stream runs, so here
the audio enters through its own pipe (`-f s16le -ar 16000 -ac 1 -i pipe:N`, passed with
`pass_fds`). Exactly rate/fps samples go in with every video frame, so the two inputs'
timestamps advance together. Audio is written by its own thread: ffmpeg reads its inputs
independently and one full pipe must never block the other.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time

import numpy as np

from ..errors import FlowactError
from ..handoff import Stage
from ..media.ffmpeg import (
    EncodeSettings,
    check_output,
    container_args,
    encode_args,
    find_ffmpeg,
    finish,
    frames_input_args,
    stderr_tail,
)


class LiveWriter:
    """Write one frame (height, width, 3) uint8 + its PCM (rate/fps samples, float32) at a time."""

    def __init__(
        self,
        path: str,
        width: int,
        height: int,
        fps: int,
        rate: int = 16_000,
        *,
        ffmpeg: str | None = None,
        settings: EncodeSettings = EncodeSettings(),
    ):
        if rate % fps:
            raise FlowactError(f"audio rate {rate} is not a whole number of samples per frame at {fps} fps")
        self.path, self.width, self.height, self.fps, self.rate = str(path), width, height, fps, rate
        self.samples_per_frame = rate // fps
        self.to_stdout = self.path == "-"
        check_output(self.path)
        exe = find_ffmpeg(ffmpeg)
        audio_r, audio_w = os.pipe()
        cmd = [
            *frames_input_args(exe, width, height, fps),
            "-f",
            "s16le",
            "-ar",
            str(rate),
            "-ac",
            "1",
            "-i",
            f"pipe:{audio_r}",
            "-map",
            "0:v:0",
            "-map",
            "1:a:0",
            *encode_args(settings, fps, self.to_stdout),
            "-c:a",
            "aac",
            "-b:a",
            settings.audio_bitrate,
            "-ar",
            "48000",
            *container_args(self.path),
        ]
        self._stderr = tempfile.TemporaryFile()
        try:
            # own session: Ctrl-C reaches only us; we close the pipes and ffmpeg finalises the file
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=None if self.to_stdout else subprocess.DEVNULL,
                stderr=self._stderr,
                pass_fds=(audio_r,),
                start_new_session=True,
            )
        finally:
            os.close(audio_r)
        self._audio = os.fdopen(audio_w, "wb", buffering=0)
        self.frames = 0
        self.first_frame_at: float | None = None
        self._closed = False
        self._audio_out = Stage("live-audio", self._audio.write, 4 * fps)

    def write(self, frame: np.ndarray, pcm: np.ndarray) -> float:
        """Write one frame and its audio; returns time.perf_counter() once the frame is in ffmpeg."""
        if len(pcm) != self.samples_per_frame:
            raise ValueError(f"need {self.samples_per_frame} samples per frame, got {len(pcm)}")
        pcm16 = (np.clip(pcm, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()
        if not self._audio_out.send(pcm16):
            raise FlowactError(
                f"ffmpeg stopped accepting audio: {self._stderr_tail() or self._audio_out.error}", path=self.path
            )
        try:
            self._proc.stdin.write(np.ascontiguousarray(frame, np.uint8).tobytes())
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise FlowactError(
                f"ffmpeg stopped accepting frames: {self._stderr_tail() or exc}", path=self.path
            ) from exc
        now = time.perf_counter()
        if self.first_frame_at is None:
            self.first_frame_at = now
        self.frames += 1
        return now

    def _stderr_tail(self) -> str:
        return stderr_tail(self._stderr)

    def close(self) -> int:
        """Close both pipes, let ffmpeg finalise the container; returns frames written."""
        if self._closed:
            return self.frames
        self._closed = True
        self._audio_out.finish(timeout=30)  # then the pipes close whatever it is doing
        for f in (self._audio, self._proc.stdin):
            try:
                f.close()
            except (BrokenPipeError, OSError):
                pass
        rc = finish(self._proc)
        if rc != 0:
            raise FlowactError(f"ffmpeg failed (exit {rc}): {self._stderr_tail()}", path=self.path)
        return self.frames
