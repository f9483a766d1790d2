"""Sessions as the web process sees them: each one's viewer (WebRTC), its command and event
channels, and its end. The stream itself (a `flowact live` LiveSession) runs in the stream process
(streams.py); they talk through link.py.

    create (POST /api/sessions)   the picture's name checked here, the picture loaded and its face
                                  found there; the live loop starts at once
    attach (POST .../offer)       the browser's WebRTC offer -> answer: video + speech out, mic in
    command (WebSocket or HTTP)   the live protocol; file names are checked against the media roots and
                                  their audio loaded here, so the stream process opens no file by name
    end                           a stop command, the viewer leaving (its page's socket closes or its
                                  connection fails), nobody attaching in time, or the server stopping:
                                  the loop stops, the connection closes, nothing keeps the session
"""

from __future__ import annotations

import asyncio
import math
import os
import secrets
import time
from collections import deque
from typing import Callable

from ..errors import FlowactError
from ..live.protocol import ProtocolError, command_from_dict
from ..live.speech import RATE
from ..media.audio import load_audio
from .link import StreamProcess
from .media import MediaLibrary, Refused
from .tracks import VIDEO_CLOCK, RtpOrigin, ViewerTracks, read_microphone

ATTACH_SECONDS = 30.0  # a session nobody watches ends after this
DISCONNECT_SECONDS = 5.0  # a viewer's connection that stays "disconnected" this long has left
CREATE_SECONDS = 60.0  # a picture's set-up (face mesh, rig) that takes longer is refused
PLANNERS = ("rules", "none")
LATE_WINDOW = 10.0  # seconds over which a session's frames held for late chunks are counted ...
LATE_SHARE = 0.10  # ... and more of them held than this: the server says that the session falls behind
LATE_EVERY = 30.0  # (at most once in this many seconds a session)


class Lateness:
    """A session's share of frames held for late chunks (shown twice: the machine did not make them in
    time) over the last LATE_WINDOW seconds, from the stream process's running counts."""

    def __init__(self):
        self._seen: deque = deque()  # (time, frames written, frames held), both counts since the start
        self._said = -math.inf
        self.share: float | None = None  # the last full window's (None: not a full window yet)

    def update(self, now: float, frames: int, held: int) -> float | None:
        """The counts at `now`; returns the share when it is past LATE_SHARE and has not been said in the
        last LATE_EVERY seconds, else None."""
        self._seen.append((now, frames, held))
        while len(self._seen) > 2 and now - self._seen[1][0] >= LATE_WINDOW:
            self._seen.popleft()
        t0, f0, h0 = self._seen[0]
        if now - t0 < 0.9 * LATE_WINDOW or frames <= f0:
            return None
        self.share = (held - h0) / (frames - f0)
        if self.share <= LATE_SHARE or now - self._said < LATE_EVERY:
            return None
        self._said = now
        return self.share


class ServedSession:
    """One character's live stream, served: created from the stream process's `created` facts."""

    def __init__(self, manager: "SessionManager", sid: str, name: str, facts: dict):
        self.manager, self.loop, self.link = manager, manager.loop, manager.link
        self.id, self.name, self.preset = sid, name, facts["preset"]
        self.width, self.height, self.fps = facts["width"], facts["height"], facts["fps"]
        self.status, self.state, self.error = "starting", None, None
        self.listeners: set[asyncio.Queue] = set()
        self.viewer_sockets = 0
        self.pc = None
        self.rtp_origin: int | None = None
        self.latency_ms: list[float] = []  # command received -> its first frame handed to WebRTC (server side)
        self.stats: dict = {"frames": 0, "held_frames": 0, "late_chunks": 0, "ahead_ms": None}
        self.lateness = Lateness()
        self.tracks = ViewerTracks(
            self.fps, RATE, watch=lambda: self.link.send("watch", sid), keyframe=lambda: self.link.send("keyframe", sid)
        )
        self._origin = RtpOrigin(self._announce_origin)
        self.tracks.video.on_recv = self._origin
        self._ending: str | None = None
        self._ended = False
        self._timers = [self.loop.call_later(ATTACH_SECONDS, self._check_attached)]  # cancelled at the end

    def end(self, reason: str) -> None:
        """Stop the stream (what is queued still plays out, ~ahead seconds); idempotent."""
        if self._ending is None and not self._ended:
            self._ending = reason
            if not self.link.send("stop", self.id, reason):
                asyncio.ensure_future(self.finished(None, "the stream process has stopped"))

    async def finished(self, report: dict | None, error: str | None) -> None:
        """The stream process says the session has ended (or it is gone): tell the listeners, close."""
        if self._ended:
            return
        self._ended = True
        self.status, self.error = ("failed" if error else "ended"), error
        ended = {"event": "ended", "reason": self._ending or ("failed" if error else "stopped"), "error": error}
        if report is not None:
            kept = ("frames", "held_frames", "late_chunks", "commands", "latency_ms")
            ended["summary"] = {k: report[k] for k in kept}
        self._broadcast(ended)
        for timer in self._timers:
            timer.cancel()
        self.tracks.end()
        self.tracks.video.on_recv = self.tracks.video.on_first = self.tracks.video.on_drop = None
        pc, self.pc = self.pc, None
        if pc is not None:
            await pc.close()
        for q in list(self.listeners):
            q.put_nowait(None)  # the sockets close
        self.manager.forget(self)

    # ---- events out ---------------------------------------------------------------------------

    def on_event(self, ev: dict) -> None:
        kind = ev.get("event")
        if kind == "start":
            self.status = "live"
        elif kind == "state":
            self.state = ev.get("state")
        elif kind == "command" and ev.get("latency_ms") is not None:
            self.latency_ms = (self.latency_ms + [ev["latency_ms"]])[-100:]
        self._broadcast(ev)

    def _broadcast(self, ev: dict) -> None:
        for q in list(self.listeners):
            if q.full():  # a socket that does not read loses its oldest events, never blocks the stream
                q.get_nowait()
            q.put_nowait(ev)

    def _announce_origin(self, origin: int) -> None:
        self.rtp_origin = origin
        self._broadcast({"event": "video", "rtp_origin": origin, "clock": VIDEO_CLOCK, "fps": self.fps})

    def listen(self) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue(maxsize=512)
        q.put_nowait(self.snapshot("session"))
        self.listeners.add(q)
        return q

    def snapshot(self, event: str | None = None) -> dict:
        d = {
            "id": self.id,
            "picture": self.name,
            "preset": self.preset,
            "status": self.status,
            "state": self.state,
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            **self.stats,  # frames, held_frames (shown twice because a chunk was late), late_chunks, ahead_ms
            "held_share": None if self.lateness.share is None else round(self.lateness.share, 3),  # last 10 s
            "viewer": self.pc is not None,
            "rtp_origin": self.rtp_origin,
            "error": self.error,
            "latency_ms": self.latency_ms[-10:],
            "watch": f"/?session={self.id}",
        }
        return {"event": event, **d} if event else d

    # ---- commands in ----------------------------------------------------------------------------

    async def command(self, obj, received: float | None = None) -> dict:
        """One command of the live protocol; file names are resolved in the media roots and loaded
        here. A bad command raises Refused (and is reported as an `error` event to every listener)."""
        received = time.perf_counter() if received is None else received
        try:
            if self._ended or self._ending:
                raise Refused("the session has ended", 410)
            try:
                cmd = command_from_dict(obj, received)
            except ProtocolError as exc:
                raise Refused(str(exc)) from exc
            if cmd.audio is not None:
                path = self.manager.media.resolve(cmd.audio, "audio")
                try:
                    audio = await self.manager.blocking(load_audio, path, RATE, allow_silent=True)
                except FlowactError as exc:
                    raise Refused(str(exc).replace(str(path), self.manager.media.display(cmd.audio))) from exc
                cmd.samples = audio.samples
        except Refused as exc:
            self._broadcast(
                {"event": "error", "message": str(exc), "id": obj.get("id") if isinstance(obj, dict) else None}
            )
            raise
        self.link.send("command", self.id, cmd)
        return {"accepted": cmd.kind, "id": cmd.id}

    # ---- the viewer (WebRTC) ----------------------------------------------------------------------

    async def answer(self, sdp: str, kind: str) -> dict:
        from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription

        if self._ended or self._ending:
            raise Refused("the session has ended", 410)
        if self.pc is not None:
            raise Refused("this session already has a viewer", 409)
        if kind != "offer" or not isinstance(sdp, str) or "m=video" not in sdp:
            raise Refused("send a WebRTC offer that receives video: {'sdp': ..., 'type': 'offer'}")
        pc = self.pc = RTCPeerConnection()

        @pc.on("connectionstatechange")
        def _state():
            if pc is not self.pc:
                return
            if pc.connectionState in ("failed", "closed"):
                self.end("viewer left")
            elif pc.connectionState == "disconnected":
                self._timers.append(self.loop.call_later(DISCONNECT_SECONDS, self._check_connected, pc))

        @pc.on("track")
        def _track(track):
            if track.kind == "audio":  # the browser's microphone: the planner listens
                asyncio.ensure_future(read_microphone(track, lambda x, at: self.link.send("hear", self.id, x, at)))

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            self._origin.sender = pc.addTrack(self.tracks.video)
            vp8 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType in ("video/VP8", "video/rtx")]
            for t in pc.getTransceivers():  # the video is VP8, encoded by the stream process
                if t.sender is self._origin.sender:
                    t.setCodecPreferences(vp8)
            if any(t.kind == "audio" for t in pc.getTransceivers()):
                pc.addTrack(self.tracks.audio)
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:  # noqa: BLE001 - a malformed offer is the client's error
            self.pc = None
            await pc.close()
            raise Refused(f"cannot use this WebRTC offer ({type(exc).__name__}: {exc})") from exc
        return {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}

    def _check_connected(self, pc) -> None:
        if pc is self.pc and pc.connectionState != "connected":
            self.end("viewer left")

    def _check_attached(self) -> None:
        if self.pc is None and self.viewer_sockets == 0:
            self.end(f"nobody watched within {ATTACH_SECONDS:.0f} s")

    def viewer_socket_closed(self) -> None:
        self.viewer_sockets -= 1
        if self.viewer_sockets <= 0:
            self.end("viewer left")


class SessionManager:
    """The server's sessions: at most `max_sessions` at once (more: 503), each ended and forgotten.
    It owns the stream process and routes its messages."""

    def __init__(
        self,
        media: MediaLibrary,
        max_sessions: int,
        loop,
        blocking: Callable,
        options: dict,
        log: Callable[[str], None] = print,
    ):
        self.media, self.max_sessions, self.loop, self.log = media, max_sessions, loop, log
        self.blocking = blocking  # async fn(f, *args, **kw): f on the web process's set-up threads
        self.preset = options.get("preset", "auto")  # the server's --preset: "auto" lets each picture choose
        self.sessions: dict[str, ServedSession] = {}
        self.started_total = 0
        self.facts: dict = {}  # the stream process's latest stats
        self.ready: asyncio.Future = loop.create_future()
        self.dead: asyncio.Future = loop.create_future()  # set when the stream process stops on its own
        self._creating: dict[str, tuple[str, asyncio.Future]] = {}
        self.link = StreamProcess(options, loop, self._on_message)

    # ---- the stream process's messages (on the event loop) ------------------------------------------

    def _on_message(self, msg: tuple) -> None:
        kind, *args = msg
        if kind == "media":
            s = self.sessions.get(args[0])
            if s is not None:
                s.tracks.deliver(*args[1:])
        elif kind == "event":
            s = self.sessions.get(args[0])
            if s is not None:
                s.on_event(args[1])
        elif kind == "stats":
            self.facts = args[0]
            now = time.monotonic()
            for sid, stats in self.facts["sessions"].items():
                s = self.sessions.get(sid)
                if s is None:
                    continue
                s.stats = stats
                share = s.lateness.update(now, stats["frames"], stats["held_frames"])
                if share is not None:
                    self.log(
                        f"flowact serve: session {sid} ({s.name}) falls behind: {share:.0%} of its frames held "
                        f"for late chunks in the last {LATE_WINDOW:.0f} s, {len(self.sessions)} sessions on "
                        f"{os.cpu_count()} cores; this machine serves fewer at once (--max-sessions; docs/serve.md)"
                    )
        elif kind in ("created", "refused"):
            pending = self._creating.pop(args[0], None)
            if pending is not None and not pending[1].done():
                pending[1].set_result(msg)
            elif kind == "created":  # its request gave up waiting: end it
                self.link.send("stop", args[0], "abandoned")
        elif kind == "ended":
            s = self.sessions.get(args[0])
            if s is not None:
                asyncio.ensure_future(s.finished(args[1], args[2]))
        elif kind == "ready":
            self.facts = {**self.facts, **args[0]}
            if not self.ready.done():
                self.ready.set_result(args[0])
        elif kind == "exited" and not self.link.closing:
            self.log(f"flowact serve: the stream process stopped (exit code {args[0]}); stopping")
            for s in list(self.sessions.values()):
                asyncio.ensure_future(s.finished(None, "the stream process stopped"))
            for _, fut in self._creating.values():
                if not fut.done():
                    fut.set_result(("refused", "", "the stream process stopped", 503))
            if not self.ready.done():
                self.ready.set_exception(FlowactError(f"the stream process did not start (exit code {args[0]})"))
            if not self.dead.done():
                self.dead.set_result(args[0])

    # ---- sessions ------------------------------------------------------------------------------------

    def get(self, sid: str) -> ServedSession:
        s = self.sessions.get(sid)
        if s is None:
            raise Refused(f"no session {sid!r} (it ended, or never was)", 404)
        return s

    async def create(self, image, planner: str = "rules") -> ServedSession:
        if len(self.sessions) + len(self._creating) >= self.max_sessions:
            raise Refused(
                f"server busy: {self.max_sessions} sessions running (--max-sessions {self.max_sessions}); "
                "try again when one ends",
                503,
            )
        if planner not in PLANNERS:
            raise Refused(f"unknown planner {planner!r} (use {' or '.join(PLANNERS)})")
        if self.dead.done():
            raise Refused("the stream process has stopped", 503)
        path = self.media.resolve(image, "picture")
        sid = secrets.token_urlsafe(9)
        done = self.loop.create_future()
        self._creating[sid] = (image, done)
        self.link.send("create", sid, str(path), self.media.display(image), self.preset, planner)
        try:
            kind, _, *rest = await asyncio.wait_for(done, CREATE_SECONDS)
        except asyncio.TimeoutError:
            self._creating.pop(sid, None)
            raise Refused(f"{image}: the picture's set-up took longer than {CREATE_SECONDS:.0f} s", 503) from None
        if kind == "refused":
            raise Refused(rest[0], rest[1])
        session = self.sessions[sid] = ServedSession(self, sid, image, rest[0])
        self.started_total += 1
        return session

    def forget(self, session: ServedSession) -> None:
        if self.sessions.get(session.id) is session:
            del self.sessions[session.id]

    async def close_all(self, timeout: float = 5.0) -> None:
        for s in list(self.sessions.values()):
            s.end("server stopping")
        deadline = time.monotonic() + timeout
        while self.sessions and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    def close(self) -> int | None:
        return self.link.close()
