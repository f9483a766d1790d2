"""Sessions: one LiveSession each (the engine of `flowact live`), its viewer's WebRTC connection,
its command and event channels, and its end.

    create (POST /api/sessions)   picture checked (face mesh on the photo route), LiveSession built,
                                  its loop started in a thread; frames flow to the tracks at once
    attach (POST .../offer)       the browser's WebRTC offer -> answer: video + speech out, mic in
    command (WebSocket or HTTP)   the live protocol; file names are checked against the media roots
    end                           a stop command, the viewer leaving (its page's socket closes or its
                                  connection fails), nobody attaching in time, or the server stopping:
                                  the loop stops, the connection closes, nothing keeps the session

All of it runs on the server's event loop except the live loop itself (its own threads) and the
blocking set-up (a small thread pool of the server's, the model work on workers.py's pool).
"""

from __future__ import annotations

import asyncio
import gc
import secrets
import threading
import time
import traceback
import weakref
from typing import Callable

from ..errors import FlowactError
from ..live import EventLog, LiveOptions, LiveSession
from ..live.protocol import ProtocolError, command_from_dict
from ..live.speech import RATE
from ..media.audio import load_audio
from .media import MediaLibrary, Refused
from .tracks import VIDEO_CLOCK, RtcOutput, RtpOrigin, read_microphone

ATTACH_SECONDS = 30.0  # a session nobody watches ends after this
DISCONNECT_SECONDS = 5.0  # a viewer's connection that stays "disconnected" this long has left
PLANNERS = ("rules", "none")


class ServedSession:
    """One character's live stream, served. Built off the event loop (`build`), used on it."""

    def __init__(self, manager: "SessionManager", sid: str, name: str, preset, route, reference, face, planner: str):
        self.manager, self.loop = manager, manager.loop
        self.id, self.name, self.preset = sid, name, preset.name
        self.height, self.width = (int(v) for v in reference.shape[:2])
        self.fps = preset.video.fps
        self.status, self.state, self.error = "starting", None, None
        self.created = time.time()
        self.listeners: set[asyncio.Queue] = set()
        self.viewer_sockets = 0
        self.pc = None
        self.rtp_origin: int | None = None
        self.latency_ms: list[float] = []  # server side: command received -> its first frame handed to WebRTC
        self.output = RtcOutput(self.loop, self.width, self.height, self.fps, RATE)
        self._origin = RtpOrigin(self._announce_origin)
        self.output.video.on_recv = self._origin
        events = EventLog(on_event=self._on_event)
        options = LiveOptions(out="webrtc", planner=planner)
        self.live = LiveSession(route, reference, options, events, face=face, output=self.output)
        self._ending: str | None = None
        self._timers: list[asyncio.TimerHandle] = []  # cancelled at the end: they must not keep the session
        self._thread = threading.Thread(target=self._run, name=f"flowact-serve-{sid}", daemon=True)

    # ---- the live loop (its own thread) ---------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        self._timers.append(self.loop.call_later(ATTACH_SECONDS, self._check_attached))

    def _run(self) -> None:
        error = report = None
        try:
            report = self.live.run().to_dict()
        except FlowactError as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - one session's failure must not take the server down
            error = f"{type(exc).__name__}: {exc}"
            self.manager.log(f"session {self.id} failed:\n{traceback.format_exc()}")
        try:
            self.loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._finished(report, error)))
        except RuntimeError:  # the loop has closed (server stopped)
            pass

    async def _finished(self, report: dict | None, error: str | None) -> None:
        self.status, self.error = ("failed" if error else "ended"), error
        ended = {"event": "ended", "reason": self._ending or ("failed" if error else "stopped"), "error": error}
        if report is not None:
            ended["summary"] = {
                k: report[k] for k in ("frames", "held_frames", "late_chunks", "commands", "latency_ms")
            }
        self._broadcast(ended)
        for timer in self._timers:
            timer.cancel()
        self.output.video.on_recv = None  # aiortc may hold the track a while; it must not hold the session
        pc, self.pc = self.pc, None
        if pc is not None:
            await pc.close()
        for q in list(self.listeners):
            q.put_nowait(None)  # the sockets close
        self.manager._forget(self)

    def end(self, reason: str) -> None:
        """Stop the stream (what is queued still plays out, ~ahead seconds); idempotent."""
        if self._ending is None:
            self._ending = reason
            self.live.stop()

    # ---- events out ---------------------------------------------------------------------------

    def _on_event(self, ev: dict) -> None:  # any thread
        try:
            self.loop.call_soon_threadsafe(self._broadcast, ev)
        except RuntimeError:
            pass

    def _broadcast(self, ev: dict) -> None:
        kind = ev.get("event")
        if kind == "start":
            self.status = "live"
        elif kind == "state":
            self.state = ev.get("state")
        elif kind == "command" and ev.get("latency_ms") is not None:
            self.latency_ms = (self.latency_ms + [ev["latency_ms"]])[-100:]
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
            "frames": self.output.frames,
            "held_frames": self.live.held,  # frames shown twice because a chunk was late (not real time)
            "late_chunks": self.live.late_chunks,
            "ahead_ms": round(1000 * self.live.ahead),  # chunks are made this long before they are shown
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
            if self.status in ("ended", "failed") or self._ending:
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
            cid = obj.get("id") if isinstance(obj, dict) else None
            self._broadcast({"event": "error", "message": str(exc), "id": cid, "t": self.live.events.now()})
            raise
        self.live.enqueue(cmd)
        return {"accepted": cmd.kind, "seq": cmd.extra["seq"], "id": cmd.id}

    # ---- the viewer (WebRTC) ----------------------------------------------------------------------

    async def answer(self, sdp: str, kind: str) -> dict:
        from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription

        if self.status in ("ended", "failed") or self._ending:
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
                asyncio.ensure_future(read_microphone(track, self.live.hear))

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            self._origin.sender = pc.addTrack(self.output.video)
            vp8 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType in ("video/VP8", "video/rtx")]
            for t in pc.getTransceivers():  # the video is VP8, encoded by the session (tracks.py)
                if t.sender is self._origin.sender:
                    t.setCodecPreferences(vp8)
            if any(t.kind == "audio" for t in pc.getTransceivers()):
                pc.addTrack(self.output.audio)
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
    """The server's sessions: at most `max_sessions` at once (more: 503), each ended and forgotten."""

    def __init__(
        self, workers, media: MediaLibrary, max_sessions: int, loop, blocking: Callable, preset="auto", log=print
    ):
        self.workers, self.media, self.max_sessions, self.loop, self.log = workers, media, max_sessions, loop, log
        self.preset = preset  # the server's --preset: "auto" lets each picture choose its route
        self.blocking = blocking  # async fn(f, *args, **kw): f on the server's set-up threads
        self.sessions: dict[str, ServedSession] = {}
        self._starting = 0
        self._ended: weakref.WeakSet = weakref.WeakSet()  # LiveSessions ended but not yet freed
        self.started_total = 0

    def get(self, sid: str) -> ServedSession:
        s = self.sessions.get(sid)
        if s is None:
            raise Refused(f"no session {sid!r} (it ended, or never was)", 404)
        return s

    async def create(self, image, planner: str = "rules") -> ServedSession:
        if len(self.sessions) + self._starting >= self.max_sessions:
            raise Refused(
                f"server busy: {self.max_sessions} sessions running (--max-sessions {self.max_sessions}); "
                "try again when one ends",
                503,
            )
        if planner not in PLANNERS:
            raise Refused(f"unknown planner {planner!r} (use {' or '.join(PLANNERS)})")
        path = self.media.resolve(image, "picture")
        self._starting += 1
        try:
            session = await self.blocking(self._build, image, path, self.preset, planner)
        finally:
            self._starting -= 1
        self.sessions[session.id] = session
        self.started_total += 1
        session.start()
        return session

    def _build(self, name: str, path, preset_name: str, planner: str) -> ServedSession:
        from ..config import load_preset
        from ..routes.choose import route_preset

        try:
            p = load_preset(route_preset(preset_name, path)[0])
            route = self.workers.route(p)
            reference, face = self.workers.load_picture(p, path, self.media.display(name))
        except Refused:
            raise
        except FlowactError as exc:
            raise Refused(str(exc).replace(str(path), self.media.display(name))) from exc
        return ServedSession(self, secrets.token_urlsafe(9), name, p, route, reference, face, planner)

    def _forget(self, session: ServedSession) -> None:
        if self.sessions.get(session.id) is session:
            del self.sessions[session.id]
        self._ended.add(session.live)

    def unreleased(self) -> int:
        """Ended sessions whose live stream (frames, rig, memory bank) is still in memory."""
        if len(self._ended):
            gc.collect()
        return len(self._ended)

    async def close_all(self, timeout: float = 5.0) -> None:
        for s in list(self.sessions.values()):
            s.end("server stopping")
        deadline = time.monotonic() + timeout
        while self.sessions and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
