"""Frames go live into ffmpeg from a writer thread fed by a bounded queue.

`VideoWriter` owns one ffmpeg process. `write()` hands frames to a bounded queue (back-
pressure: a slow encoder slows the producer instead of filling memory); a thread (a
`handoff.Stage`) feeds them to ffmpeg's stdin as raw RGB. `close()` always finalises the
container, so an interrupted render leaves a playable file of what was made.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import FlowactError
from ..handoff import Stage


def find_ffmpeg(explicit: str | None = None) -> str:
    """The ffmpeg binary: `explicit` (or $FLOWACT_FFMPEG) if given, else imageio-ffmpeg's bundled one."""
    explicit = explicit or os.environ.get("FLOWACT_FFMPEG")
    if explicit:
        found = shutil.which(explicit) or (explicit if Path(explicit).is_file() else None)
        if not found or not os.access(found, os.X_OK):
            raise FlowactError("ffmpeg not found or not executable (set by --ffmpeg / FLOWACT_FFMPEG)", path=explicit)
        return found
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as exc:  # noqa: BLE001 - report any failure to locate it the same way
        system = shutil.which("ffmpeg")
        if system:
            return system
        raise FlowactError(
            f"no ffmpeg available: imageio-ffmpeg failed ({exc}) and none on PATH; "
            "install imageio-ffmpeg or pass --ffmpeg PATH"
        ) from exc


STALL_SECONDS = 60.0  # an encoder that takes no frame for this long is stuck (VideoWriter._drain)


def check_output(path: str | Path) -> None:
    """Fail before any work if the output cannot be written ('-' is stdout)."""
    if str(path) == "-":
        return
    out = Path(path)
    if out.is_dir():
        raise FlowactError("output path is a directory", path=out)
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise FlowactError("output folder does not exist", path=parent)
    if not os.access(parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise FlowactError("output path is not writable", path=out)


@dataclass(frozen=True)
class EncodeSettings:
    codec: str = "libx264"
    crf: int = 20
    preset: str = "veryfast"
    audio_bitrate: str = "128k"


def encode_args(settings: EncodeSettings, fps: float, to_stdout: bool) -> list[str]:
    """H.264 yuv420p (+ a keyframe every second when piping, so a player can join quickly)."""
    args = ["-c:v", settings.codec, "-preset", settings.preset, "-crf", str(settings.crf), "-pix_fmt", "yuv420p"]
    return args + (["-g", f"{max(1, round(fps))}"] if to_stdout else [])


def container_args(path: str) -> list[str]:
    """A file gets a regular mp4 with the index up front (browser playback); a pipe cannot be
    seeked back into, so stdout gets a fragmented mp4 flushed as fragments are made."""
    if path == "-":
        return [
            "-tune",
            "zerolatency",
            "-flush_packets",
            "1",
            "-f",
            "mp4",
            "-movflags",
            "frag_keyframe+empty_moov+default_base_moof",
            "pipe:1",
        ]
    return ["-movflags", "+faststart", path]


def stderr_tail(stderr_file, lines: int = 3) -> str:
    """The last lines ffmpeg wrote to its (temporary file) stderr, on one line."""
    stderr_file.seek(0)
    text = stderr_file.read().decode("utf-8", "replace").strip()
    return " | ".join(text.splitlines()[-lines:])


def frames_input_args(exe: str, width: int, height: int, fps: float) -> list[str]:
    """The start of every ffmpeg command here: quiet, overwrite, raw RGB frames on stdin."""
    return [exe, "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
            "-s", f"{width}x{height}", "-r", f"{fps:g}", "-i", "pipe:0"]  # fmt: skip


def finish(proc: subprocess.Popen, timeout: float = 120) -> int:
    """Wait for ffmpeg to finalise after its inputs closed; nudge it with SIGINT if it hangs."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        return proc.wait()


@dataclass
class WriterStats:
    frames: int
    first_frame_at: float | None  # time.perf_counter() when the first frame entered ffmpeg
    write_seconds: float  # time the writer thread spent blocked writing into ffmpeg
    path: str


class VideoWriter:
    """Stream RGB frames into an H.264 mp4 (or a fragmented mp4 on stdout when path is '-').

    frames: uint8 arrays (frames, height, width, 3). Audio, if given, is muxed as AAC.
    """

    def __init__(
        self,
        path: str | Path,
        width: int,
        height: int,
        fps: float,
        *,
        audio: str | Path | None = None,
        ffmpeg: str | None = None,
        settings: EncodeSettings = EncodeSettings(),
        queue_frames: int = 64,
        shortest: bool = False,
    ):
        if width % 2 or height % 2:
            raise FlowactError(f"video size {width}x{height} must be even for yuv420p")
        self.path = str(path)
        self.width, self.height, self.fps = width, height, fps
        self.to_stdout = self.path == "-"
        check_output(self.path)
        exe = find_ffmpeg(ffmpeg)
        cmd = frames_input_args(exe, width, height, fps)
        if audio is not None:
            cmd += ["-i", str(audio)]
        cmd += ["-map", "0:v:0"] + (["-map", "1:a:0"] if audio is not None else [])
        cmd += encode_args(settings, fps, self.to_stdout)
        if audio is not None:
            cmd += ["-c:a", "aac", "-b:a", settings.audio_bitrate, "-ar", "48000"]  # 21 ms AAC frames
            if shortest:  # an interrupted render keeps audio and video the same length
                cmd += ["-shortest"]
        cmd += container_args(self.path)
        self._stderr = tempfile.TemporaryFile()
        # New session: a Ctrl-C in the terminal reaches only us; we then close stdin and
        # ffmpeg finalises the file instead of dying mid-write.
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=None if self.to_stdout else subprocess.DEVNULL,
            stderr=self._stderr,
            start_new_session=True,
        )
        self.frames_written = 0
        self.first_frame_at: float | None = None
        self._write_seconds = 0.0
        self._closed = False
        self._feeder = Stage("ffmpeg-writer", self._feed, queue_frames)

    def _feed(self, frame: np.ndarray) -> None:
        t0 = time.perf_counter()
        self._proc.stdin.write(frame.tobytes())
        self._proc.stdin.flush()
        if self.first_frame_at is None:
            self.first_frame_at = time.perf_counter()
        self._write_seconds += time.perf_counter() - t0
        self.frames_written += 1

    def write(self, frames: np.ndarray) -> None:
        """Queue frames (frames, height, width, 3) uint8 or one frame (height, width, 3)."""
        if self._closed:
            raise RuntimeError("VideoWriter is closed")
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.shape[1:] != (self.height, self.width, 3) or frames.dtype != np.uint8:
            raise ValueError(
                f"frames must be uint8 (n, {self.height}, {self.width}, 3), got {frames.dtype} {frames.shape}"
            )
        for frame in frames:
            if not self._feeder.send(np.ascontiguousarray(frame), self._stall_watch()):
                raise FlowactError(
                    f"ffmpeg stopped accepting frames: {self._stderr_tail() or self._feeder.error}", path=self.path
                )

    def _stderr_tail(self) -> str:
        return stderr_tail(self._stderr)

    def _stall_watch(self):
        """A check to run while waiting on the feeder: an ffmpeg that is alive but takes no frame
        for STALL_SECONDS of waiting is killed, so its pipe fails the feeder's blocked write and
        the wait ends with ffmpeg's error (a stalled encoder must not hang the render)."""
        seen, since = self.frames_written, time.monotonic()

        def watch() -> None:
            nonlocal seen, since
            if self.frames_written != seen:
                seen, since = self.frames_written, time.monotonic()
            elif time.monotonic() - since > STALL_SECONDS and self._proc.poll() is None:
                self._proc.kill()

        return watch

    def _drain(self) -> None:
        """End of stream for the feeder, waiting as long as ffmpeg keeps taking frames."""
        watch = self._stall_watch()
        while not self._feeder.finish(timeout=1.0):
            watch()

    def close(self) -> WriterStats:
        """Flush the queue, finalise the container, and check ffmpeg's exit status."""
        if not self._closed:
            self._closed = True
            self._drain()
            try:
                self._proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            rc = finish(self._proc)
            if rc != 0 or self._feeder.error is not None:
                raise FlowactError(
                    f"ffmpeg failed (exit {rc}): {self._stderr_tail() or self._feeder.error}", path=self.path
                )
        return WriterStats(self.frames_written, self.first_frame_at, self._write_seconds, self.path)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc) -> None:
        # On an exception we still finalise (the partial file stays playable) but let the
        # original exception win over a secondary ffmpeg complaint.
        try:
            self.close()
        except FlowactError:
            if exc[0] is None:
                raise
