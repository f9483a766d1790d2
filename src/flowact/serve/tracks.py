"""The session's media over WebRTC (aiortc): its paced frames and speech out, the browser's microphone in.

`RtcOutput` takes the place of the live loop's ffmpeg writer (LiveWriter's `write(frame, pcm)`,
`frames`, `close()`): the pacing thread encodes each frame (VP8, `Vp8`) and hands it with its 40 ms
of speech to a video and an audio track; aiortc packetises the video and encodes the audio (Opus).
Slot n of the stream carries the video timestamp n * 3600 (90 kHz clock, 25 fps) and the audio
timestamp n * 640 (16 kHz), so the page can name the stream slot of every frame it shows from its
RTP timestamp (`rtp_origin`, below) and time a command from the moment it sent it to the frame that
first shows it.

The video is encoded here rather than by aiortc's encoder because that one runs libvpx's denoiser
and a slower speed setting, meant for camera noise: on these clean, generated frames it cost 3.5 ms
a frame at 512x512 where this costs ~1 ms (one core, measured 2026-12-06), and nothing is encoded
until a viewer receives. A keyframe starts every viewer's stream, follows any dropped frame, and
comes every 2 s besides (aiortc's keyframe requests do not reach pre-encoded video).

A track keeps only the newest few items: a browser that has not connected yet, or falls behind,
gets the live edge, and the pacing thread never waits on the network.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from typing import Callable

import numpy as np

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

VIDEO_CLOCK = 90_000
RTP_WRAP = 1 << 32


class QueueTrack(MediaStreamTrack):
    """A track fed from the event loop (`put`), newest items kept; `None` ends it."""

    def __init__(self, kind: str, keep: int):
        super().__init__()
        self.kind = kind
        self._items: asyncio.Queue = asyncio.Queue(maxsize=keep)
        self.sent = 0  # items handed to the sender
        self.receiving = False  # a sender has asked for an item: a viewer is connected
        self.dropped = 0
        self.on_recv: Callable[[object], None] | None = None

    def put(self, item) -> None:
        if self.readyState != "live":
            return
        if self._items.full():
            self._items.get_nowait()  # the oldest goes: the browser gets the live edge
            self.dropped += 1
        self._items.put_nowait(item)

    def end(self) -> None:
        if self._items.full():
            self._items.get_nowait()
        self._items.put_nowait(None)

    async def recv(self):
        if self.readyState != "live":
            raise MediaStreamError
        self.receiving = True
        item = await self._items.get()
        if item is None:
            self.stop()
            raise MediaStreamError
        if self.on_recv is not None:
            self.on_recv(item)
        self.sent += 1
        return item


class RtpOrigin:
    """The video sender's random RTP timestamp origin, so the page can turn a frame's `rtpTimestamp`
    into its stream slot. aiortc keeps it private (RTCRtpSender stamps origin + pts); the last
    stamped timestamp minus the last frame's pts gives it, checked on two frames in a row before
    it is announced. None of this is needed to watch; without it the page times commands by the
    server's clock."""

    def __init__(self, announce: Callable[[int], None]):
        self.sender = None
        self.value: int | None = None
        self._announce, self._last_pts, self._candidate = announce, None, None

    def __call__(self, frame) -> None:  # QueueTrack.on_recv: the sender has sent every earlier frame
        if self.value is None and self.sender is not None and self._last_pts is not None:
            stamped = getattr(self.sender, "_RTCRtpSender__rtp_timestamp", None)
            if isinstance(stamped, int):
                origin = (stamped - self._last_pts) % RTP_WRAP
                if origin == self._candidate:
                    self.value = origin
                    self._announce(origin)
                self._candidate = origin
        self._last_pts = frame.pts


class Vp8:
    """VP8 for live generated frames: realtime deadline, fast speed setting, no denoiser, constant
    bitrate, no frame lag (each frame's packet comes out of its own `encode`)."""

    def __init__(self, width: int, height: int, bitrate: int = 600_000, keyframe_every: int = 50):
        import av

        c = self.codec = av.CodecContext.create("libvpx", "w")
        c.width, c.height, c.pix_fmt = width, height, "yuv420p"
        c.bit_rate, c.time_base = bitrate, fractions.Fraction(1, VIDEO_CLOCK)
        c.gop_size, c.qmin, c.qmax, c.thread_count = keyframe_every, 2, 56, 1
        c.options = {
            "deadline": "realtime",
            "cpu-used": "-12",
            "noise-sensitivity": "0",
            "lag-in-frames": "0",
            "static-thresh": "1",
            "minrate": str(bitrate),
            "maxrate": str(bitrate),
            "bufsize": str(bitrate),
            "undershoot-pct": "100",
            "overshoot-pct": "15",
        }

    def encode(self, frame: np.ndarray, pts: int, key: bool = False) -> list:
        import av

        f = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame, np.uint8), format="rgb24").reformat(format="yuv420p")
        f.pts, f.time_base = pts, self.codec.time_base
        f.pict_type = av.video.frame.PictureType.I if key else av.video.frame.PictureType.NONE
        packets = self.codec.encode(f)
        for p in packets:
            p.pts, p.time_base = pts, self.codec.time_base
        return packets


class RtcOutput:
    """LiveWriter's interface over two WebRTC tracks. `write` runs on the live loop's pacing thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, width: int, height: int, fps: int, rate: int = 16_000):
        if VIDEO_CLOCK % fps or rate % fps:
            raise ValueError(f"{fps} fps does not divide the 90 kHz video clock and the {rate} Hz audio rate")
        self.loop, self.width, self.height, self.fps, self.rate = loop, width, height, fps, rate
        self.spf = rate // fps
        self.video = QueueTrack("video", keep=3)
        self.audio = QueueTrack("audio", keep=6)
        self.frames = 0
        self.first_frame_at: float | None = None
        self._vp8: Vp8 | None = None
        self._dropped = 0
        self._closed = False

    def write(self, frame: np.ndarray, pcm: np.ndarray) -> float:
        """One frame and its speech (pacing thread). The frame is encoded only while a viewer receives."""
        import av

        if len(pcm) != self.spf:
            raise ValueError(f"need {self.spf} samples per frame, got {len(pcm)}")
        packets = []
        if self.video.receiving:
            first = self._vp8 is None
            if first:
                self._vp8 = Vp8(frame.shape[1], frame.shape[0])
            dropped = self.video.dropped  # a dropped frame breaks the chain of deltas: start a new one
            key, self._dropped = first or dropped != self._dropped, dropped
            packets = self._vp8.encode(frame, self.frames * (VIDEO_CLOCK // self.fps), key)
        pcm16 = (np.clip(pcm, -1.0, 1.0) * 32767.0).round().astype(np.int16)
        a = av.AudioFrame.from_ndarray(pcm16[None], format="s16", layout="mono")
        a.sample_rate, a.pts, a.time_base = self.rate, self.frames * self.spf, fractions.Fraction(1, self.rate)
        try:
            self.loop.call_soon_threadsafe(self._deliver, packets, a)
        except RuntimeError:  # the event loop has closed: the server is stopping
            pass
        now = time.perf_counter()
        if self.first_frame_at is None:
            self.first_frame_at = now
        self.frames += 1
        return now

    def _deliver(self, packets, a) -> None:
        for p in packets:
            self.video.put(p)
        self.audio.put(a)

    def close(self) -> int:
        if not self._closed:
            self._closed = True
            try:
                self.loop.call_soon_threadsafe(self._end)
            except RuntimeError:
                pass
        return self.frames

    def _end(self) -> None:
        self.video.end()
        self.audio.end()


async def read_microphone(track, hear: Callable[[np.ndarray, float], None], rate: int = 16_000) -> None:
    """The browser's microphone track -> 16 kHz mono float32 pieces -> `hear(samples, arrival)`,
    until the track ends."""
    import av

    resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        arrival = time.perf_counter()
        for out in resampler.resample(frame):
            samples = out.to_ndarray().reshape(-1).astype(np.float32) / 32768.0
            if len(samples):
                hear(samples, arrival)
