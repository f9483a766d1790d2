"""A viewer's media over WebRTC (aiortc), in the web process: the session's frames and speech out,
the browser's microphone in.

`ViewerTracks` holds a session's video and audio tracks. The stream process sends each paced slot
as VP8 packets and 40 ms of 16-bit speech (streams.py); here they become the video track's packets
(aiortc only packetises them) and the audio track's frames (aiortc encodes Opus). Slot n carries
the video timestamp n * 3600 (90 kHz clock, 25 fps) and the audio timestamp n * 640 (16 kHz), so
the page can name the stream slot of every frame it shows from its RTP timestamp (`RtpOrigin`)
and time a command from the moment it sent it to the frame that first shows it.

A track keeps only the newest few items: a browser that falls behind gets the live edge (and a
keyframe, asked of the stream process, to restart its picture), and nothing waits on the network.
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
    """A track fed on the event loop (`put`), newest items kept; `end()` ends it."""

    def __init__(self, kind: str, keep: int):
        super().__init__()
        self.kind = kind
        self._items: asyncio.Queue = asyncio.Queue(maxsize=keep)
        self.sent = self.dropped = 0
        self.on_first: Callable[[], None] | None = None  # the sender asked for its first item
        self.on_drop: Callable[[], None] | None = None
        self.on_recv: Callable[[object], None] | None = None

    def put(self, item) -> None:
        if self.readyState != "live":
            return
        if self._items.full():
            self._items.get_nowait()  # the oldest goes: the browser gets the live edge
            self.dropped += 1
            if self.on_drop is not None:
                self.on_drop()
        self._items.put_nowait(item)

    def end(self) -> None:
        if self._items.full():
            self._items.get_nowait()
        self._items.put_nowait(None)

    async def recv(self):
        if self.readyState != "live":
            raise MediaStreamError
        if self.sent == 0 and self.on_first is not None:
            self.on_first()
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
    it is announced. None of this is needed to watch; without it the page shows the server's
    latency figures only."""

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


class ViewerTracks:
    """A session's two tracks; `deliver` one slot's media (on the event loop)."""

    def __init__(self, fps: int, rate: int = 16_000, *, watch: Callable[[], None], keyframe: Callable[[], None]):
        if VIDEO_CLOCK % fps or rate % fps:
            raise ValueError(f"{fps} fps does not divide the 90 kHz video clock and the {rate} Hz audio rate")
        self.fps, self.rate, self.spf = fps, rate, rate // fps
        self.video = QueueTrack("video", keep=3)
        self.audio = QueueTrack("audio", keep=6)
        self.video.on_first, self.video.on_drop = watch, keyframe
        self._base = fractions.Fraction(1, VIDEO_CLOCK)

    def deliver(self, slot: int, packets: list[tuple[bytes, bool]], pcm16: bytes) -> None:
        import av

        for data, key in packets:
            p = av.Packet(data)
            p.pts, p.time_base, p.is_keyframe = slot * (VIDEO_CLOCK // self.fps), self._base, key
            self.video.put(p)
        a = av.AudioFrame.from_ndarray(np.frombuffer(pcm16, "<i2")[None], format="s16", layout="mono")
        a.sample_rate, a.pts, a.time_base = self.rate, slot * self.spf, fractions.Fraction(1, self.rate)
        self.audio.put(a)

    def end(self) -> None:
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
