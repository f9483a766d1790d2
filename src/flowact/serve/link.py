"""The two processes of `flowact serve` and the one pipe between them.

The web process (app.py, sessions.py) runs HTTP, the WebSockets and WebRTC (aiohttp, aiortc); the
stream process (streams.py) runs every session's live loop, the worker pool and the video encoder.
They are apart so that neither waits on the other's Python lock: with three viewers, aiortc's
per-packet Python work held the lock ~20% of the time on the event loop (py-spy, 2026-12-06), and
the chunks' many small torch calls each take it back. On the 2-core machine, where the CPU itself
is the limit with three sessions, the split did not measurably shorten the chunks (their wall time
stayed ~1.6-2x their CPU time either way); it keeps the HTTP side answering whatever the model work
does. Both use the same monotonic clock (`time.perf_counter`), so a command's receipt in the web
process and its first frame in the stream process time its latency.

Messages are tuples, their kind first:

    web -> streams   create(sid, path, name, preset, planner)   command(sid, Command)
                     hear(sid, samples, arrival)   watch(sid)   keyframe(sid)   stop(sid, reason)   quit()
    streams -> web   ready(facts)   created(sid, facts)   refused(sid, message, status)
                     media(sid, slot, packets, pcm16)   event(sid, event)   ended(sid, report, error)
                     stats(facts)   and, from the reader when the pipe closes: exited(returncode)
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from typing import Callable


class StreamProcess:
    """The web process's handle on the stream process: start it, send to it, hear from it on the
    event loop (`on_message(msg)`), stop it."""

    def __init__(self, options: dict, loop: asyncio.AbstractEventLoop, on_message: Callable[[tuple], None]):
        ours, theirs = socket.socketpair()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flowact.serve.streams", str(theirs.fileno()), json.dumps(options)],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        self.conn = Connection(os.dup(ours.fileno()))
        ours.close()
        self.loop, self.on_message = loop, on_message
        self.closing = False  # set by close(): the pipe's end is then expected
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name="flowact-serve-link", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):
                break
            try:
                self.loop.call_soon_threadsafe(self.on_message, msg)
            except RuntimeError:  # the loop has closed
                return
        try:
            self.loop.call_soon_threadsafe(self.on_message, ("exited", self.proc.wait(10)))
        except (RuntimeError, subprocess.TimeoutExpired):
            pass

    def send(self, *msg) -> bool:
        """Send one message; False when the stream process is gone."""
        with self._lock:
            try:
                self.conn.send(msg)
                return True
            except (OSError, ValueError):
                return False

    def close(self, timeout: float = 10.0) -> int | None:
        """Ask it to quit (its sessions end), wait, then kill it if it has not."""
        self.closing = True
        self.send("quit")
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)
        finally:
            self.conn.close()
