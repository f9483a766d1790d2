"""The stream process: every session's `flowact live` loop, the worker pool that runs their model
work (workers.py), and each session's video encoder. The web process starts it (link.py) and talks
to it over one pipe; this module's `main` is its entry point (`python -m flowact.serve.streams FD
OPTIONS`).

A session here is a LiveSession whose output (`StreamOutput`, LiveWriter's interface) encodes each
paced frame as VP8 and sends it with its 40 ms of speech to the web process, only while a viewer
receives. VP8 is encoded here rather than by aiortc because aiortc's encoder runs libvpx's denoiser
at a slower speed, meant for cameras: on these clean, generated frames it took 3.5 ms a 512x512
frame against ~1.5 ms here (one core, measured 2026-12-06). A keyframe starts every viewer's
stream, follows a frame the web process had to drop, and comes every 2 s besides.
"""

from __future__ import annotations

import fractions
import gc
import json
import signal
import sys
import threading
import time
import traceback
import weakref
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection

import numpy as np

from ..errors import FlowactError
from ..live import EventLog, LiveOptions, LiveSession
from .media import Refused
from .workers import Workers

VIDEO_CLOCK = 90_000
STATS_SECONDS = 0.5


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

    def encode(self, frame: np.ndarray, pts: int, key: bool = False) -> list[tuple[bytes, bool]]:
        """One frame (H, W, 3) uint8 -> its packets as (bytes, keyframe)."""
        import av

        f = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame, np.uint8), format="rgb24").reformat(format="yuv420p")
        f.pts, f.time_base = pts, self.codec.time_base
        f.pict_type = av.video.frame.PictureType.I if key else av.video.frame.PictureType.NONE
        return [(bytes(p), bool(p.is_keyframe)) for p in self.codec.encode(f)]


class StreamOutput:
    """LiveWriter's interface (`write(frame, pcm) -> time`, `frames`, `close()`) for a served
    session: slot n's frame (VP8, timestamp n * 3600 at 90 kHz) and speech (16-bit PCM) go to the
    web process as one `media` message, while a viewer receives (`watching`)."""

    def __init__(self, send, sid: str, fps: int):
        self.send, self.sid, self.fps = send, sid, fps
        self.frames = 0
        self.watching = False  # set when the viewer's video sender first asks for a frame
        self.key_next = False  # the web process dropped a frame: the next one starts a new chain
        self._vp8: Vp8 | None = None

    def write(self, frame: np.ndarray, pcm: np.ndarray) -> float:
        if self.watching:
            first = self._vp8 is None
            if first:
                self._vp8 = Vp8(frame.shape[1], frame.shape[0])
            key, self.key_next = first or self.key_next, False
            packets = self._vp8.encode(frame, self.frames * (VIDEO_CLOCK // self.fps), key)
            pcm16 = (np.clip(pcm, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()
            self.send("media", self.sid, self.frames, packets, pcm16)
        self.frames += 1
        return time.perf_counter()

    def close(self) -> int:
        return self.frames


class StreamSession:
    """One session's LiveSession, run in its own thread; its events and its end go to the web process."""

    def __init__(self, hub: "Streams", sid: str, preset, route, reference, face, planner: str):
        self.hub, self.sid = hub, sid
        self.output = StreamOutput(hub.send, sid, preset.video.fps)
        events = EventLog(on_event=lambda ev: hub.send("event", sid, ev))
        route = route.for_session()  # its chunks queue by their due times
        self.live = LiveSession(route, reference, LiveOptions(out="webrtc", planner=planner), events, face=face,
                                output=self.output)  # fmt: skip
        route.live = self.live
        self.facts = {
            "preset": preset.name,
            "width": int(reference.shape[1]),
            "height": int(reference.shape[0]),
            "fps": preset.video.fps,
        }
        self._thread = threading.Thread(target=self._run, name=f"flowact-serve-{sid}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        report = error = None
        try:
            report = self.live.run().to_dict()
        except FlowactError as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - one session's failure must not take the others down
            error = f"{type(exc).__name__}: {exc}"
            print(f"flowact serve: session {self.sid} failed:\n{traceback.format_exc()}", file=sys.stderr, flush=True)
        self.hub.finished(self, report, error)

    def stats(self) -> dict:
        live = self.live
        return {"frames": self.output.frames, "held_frames": live.held, "late_chunks": live.late_chunks,
                "ahead_ms": round(1000 * live.ahead)}  # fmt: skip


class Streams:
    """The stream process's sessions, driven by the web process's messages."""

    def __init__(self, conn: Connection, options: dict):
        self.conn, self.options = conn, options
        self._lock = threading.Lock()
        self.workers = Workers(options.get("workers"))
        self.sessions: dict[str, StreamSession] = {}
        self._ended: weakref.WeakSet = weakref.WeakSet()  # LiveSessions ended but not yet freed
        self._setup = ThreadPoolExecutor(max_workers=2, thread_name_prefix="flowact-serve-setup")
        self._quit = threading.Event()

    def send(self, *msg) -> None:
        with self._lock:
            try:
                self.conn.send(msg)
            except (OSError, ValueError):  # the web process is gone: end everything
                self._quit.set()

    def serve(self) -> None:
        from ..config import load_preset

        for name in self.options.get("preload", []):
            self.workers.route(load_preset(name))
        self.send("ready", {"routes": self.workers.loaded, "workers": self.workers.pool.workers})
        threading.Thread(target=self._report, name="flowact-serve-stats", daemon=True).start()
        while not self._quit.is_set():
            try:
                kind, *args = self.conn.recv()
            except (EOFError, OSError):
                break
            if kind == "quit":
                break
            getattr(self, f"_on_{kind}")(*args)
        self._quit.set()
        for s in list(self.sessions.values()):
            s.live.stop()
        deadline = time.monotonic() + 5
        while self.sessions and time.monotonic() < deadline:
            time.sleep(0.05)
        self.workers.close()

    # ---- the web process's messages ------------------------------------------------------------

    def _on_create(self, sid: str, path: str, name: str, preset: str, planner: str) -> None:
        self._setup.submit(self._create, sid, path, name, preset, planner)

    def _create(self, sid: str, path: str, name: str, preset: str, planner: str) -> None:
        from ..config import load_preset
        from ..routes.choose import route_preset

        try:
            p = load_preset(route_preset(preset, path)[0])
            route = self.workers.route(p)
            reference, face = self.workers.load_picture(p, path, name)
            session = StreamSession(self, sid, p, route, reference, face, planner)
        except Refused as exc:
            return self.send("refused", sid, str(exc), exc.status)
        except FlowactError as exc:
            return self.send("refused", sid, str(exc).replace(str(path), name), 400)
        except Exception as exc:  # noqa: BLE001 - a bug in one picture's set-up: that session is refused
            print(f"flowact serve: set-up of {name} failed:\n{traceback.format_exc()}", file=sys.stderr, flush=True)
            return self.send("refused", sid, f"{name}: internal error ({type(exc).__name__})", 500)
        self.sessions[sid] = session
        session.start()
        self.send("created", sid, session.facts)

    def _on_command(self, sid: str, cmd) -> None:
        if sid in self.sessions:
            self.sessions[sid].live.enqueue(cmd)

    def _on_hear(self, sid: str, samples: np.ndarray, arrival: float) -> None:
        if sid in self.sessions:
            self.sessions[sid].live.hear(samples, arrival)

    def _on_watch(self, sid: str) -> None:
        if sid in self.sessions:
            self.sessions[sid].output.watching = True

    def _on_keyframe(self, sid: str) -> None:
        if sid in self.sessions:
            self.sessions[sid].output.key_next = True

    def _on_stop(self, sid: str, reason: str) -> None:
        if sid in self.sessions:
            self.sessions[sid].live.stop()

    # ---- to the web process ----------------------------------------------------------------------

    def finished(self, session: StreamSession, report: dict | None, error: str | None) -> None:
        self.sessions.pop(session.sid, None)
        self._ended.add(session.live)
        self.send("ended", session.sid, report, error)

    def _report(self) -> None:
        """Every STATS_SECONDS: each session's frames and lateness, the pool's load, what is not freed."""
        while not self._quit.wait(STATS_SECONDS):
            if len(self._ended):
                gc.collect()
            self.send(
                "stats",
                {
                    "sessions": {sid: s.stats() for sid, s in list(self.sessions.items())},
                    "unreleased": len(self._ended),
                    "worker_load": round(self.workers.pool.load(), 3),
                    "workers": self.workers.pool.workers,
                    "routes": self.workers.loaded,
                },
            )


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the web process too: it ends us in order
    conn = Connection(int(argv[1]))
    try:
        Streams(conn, json.loads(argv[2])).serve()
    finally:
        conn.close()


if __name__ == "__main__":
    main(sys.argv)
