"""Helpers of the `flowact serve` tests: the server in a subprocess, headless Chromium driven by
Playwright with a fake microphone, hard time limits. Run as a script it measures the server:

    python tests/serve_browser.py --sessions 3 --seconds 20      # JSON: fps, held frames, latency p50/p95

The browser is the system's chromium (Debian's package; `scripts/setup.sh` installs it as root);
Playwright drives it through `executable_path` and downloads nothing. A missing browser or
Playwright fails the tests with a message naming what to install: they are never skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MIC_WAV = ROOT / "examples" / "human_speech.wav"  # what the fake microphone says (looped by Chromium)
FLOOR = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
READY = re.compile(r"flowact serve: (http://\S+/) ready")


def chromium() -> str:
    """The system's Chromium, or an error naming how to get it."""
    exe = os.environ.get("FLOWACT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        raise RuntimeError(
            "the flowact serve browser tests need Chromium: apt-get install chromium (scripts/setup.sh does it "
            "as root), or FLOWACT_CHROMIUM=/path/to/chromium"
        )
    return exe


def playwright():
    """Playwright's sync API, or an error naming how to get it."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise RuntimeError("the flowact serve browser tests need Playwright: pip install -e '.[dev]'") from exc
    return sync_playwright


@contextmanager
def hard_limit(seconds: float, what: str):
    """Raise TimeoutError in the main thread if the block runs longer than `seconds` (a hung browser
    or server fails the test instead of stopping the suite)."""

    def expired(signum, frame):
        raise TimeoutError(f"{what} took more than {seconds:.0f} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


class Server:
    """`flowact serve --port 0 ARGS` in its own process group; `url` once it said it is ready."""

    def __init__(self, *args: str, env: dict | None = None, ready_timeout: float = 90.0):
        self.args, self.lines, self.url, self.token = list(args), [], None, None
        if "--token" in self.args:
            self.token = self.args[self.args.index("--token") + 1]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flowact", "serve", "--port", "0", *self.args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        ready = threading.Event()

        def read():
            for line in self.proc.stderr:
                self.lines.append(line.rstrip("\n"))
                m = READY.search(line)
                if m:
                    self.url = m.group(1)
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(ready_timeout) or self.url is None:
            self.kill()
            raise RuntimeError(f"flowact serve did not get ready: {self.log()}")

    def log(self) -> str:
        return "\n".join(self.lines[-30:])

    def request(self, method: str, path: str, body=None, token: str | None = "default", headers=None):
        """(status, parsed JSON body) of one HTTP call; `body`: a dict (JSON) or bytes."""
        data, hdrs = None, dict(headers or {})
        if isinstance(body, (dict, list)):
            data, hdrs["Content-Type"] = json.dumps(body).encode(), "application/json"
        elif body is not None:
            data = body
        token = self.token if token == "default" else token
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.url.rstrip("/") + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                raw, status = r.read(), r.status
        except urllib.error.HTTPError as e:
            raw, status = e.read(), e.code
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def get(self, path: str, **kw):
        return self.request("GET", path, **kw)

    def post(self, path: str, body=None, **kw):
        return self.request("POST", path, body, **kw)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGINT, as Ctrl-C; the server must end every session and exit by itself."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"flowact serve did not stop within {timeout:.0f} s of SIGINT: {self.log()}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def launch(pw, mic: Path = MIC_WAV):
    """Headless Chromium with a fake microphone saying `mic`, media autoplay allowed."""
    return pw.chromium.launch(
        executable_path=chromium(),
        headless=True,
        timeout=60_000,
        args=[
            "--no-sandbox",
            "--disable-dev-shm-usage",  # a container's small /dev/shm must not crash it
            "--autoplay-policy=no-user-gesture-required",
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={mic}",
        ],
    )


def facts(page) -> dict:
    return page.evaluate("() => JSON.parse(JSON.stringify(window.flowact))")


def wait_facts(page, ok, seconds: float, what: str) -> dict:
    """Poll window.flowact until ok(facts); else an AssertionError showing the last facts."""
    deadline, f = time.monotonic() + seconds, {}
    while time.monotonic() < deadline:
        f = facts(page)
        if ok(f):
            return f
        if f.get("status") == "error":
            break
        page.wait_for_timeout(100)
    raise AssertionError(f"{what}: not within {seconds:.0f} s; window.flowact = {f}")


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


# Pages that only watch (no microphone: its echo cancellation and encoding cost Chromium ~5% of a
# core a page) in a small window (less to composite): the browsers share the server's two cores here.
LIGHT_PAGE = {"query": "&mic=0", "viewport": {"width": 360, "height": 300}}


def measure(server: Server, pw, sessions: int, seconds: float, speaks: int) -> dict:
    """`sessions` pages at once: each page's frame rate over `seconds`, the server's held frames, and
    `speaks` speak commands per page (staggered), each timed in its page from send to first frame shown."""
    browser = launch(pw)
    try:
        pages = [browser.new_page(viewport=LIGHT_PAGE["viewport"]) for _ in range(sessions)]
        for p in pages:
            p.goto(server.url + "?image=astronaut.jpg&autoplay=1" + LIGHT_PAGE["query"])
        for p in pages:  # every session past its start (set-up, warm-up, the browsers' first seconds)
            wait_facts(p, lambda f: f["frames"] >= 5 * 25, 90, "video on every page")
        start = [facts(p) for p in pages]
        ids = [facts(p)["session"] for p in pages]
        held0 = {s["id"]: s["held_frames"] for s in server.get("/api/sessions")[1]}
        t0 = time.monotonic()
        gap = seconds / max(1, speaks)
        for i in range(speaks):  # each page speaks at its own offset within every gap
            for j, p in enumerate(pages):
                target = t0 + i * gap + (j + 0.5) * gap / (sessions + 1)
                while time.monotonic() < target:
                    time.sleep(0.01)
                p.evaluate("() => send({cmd: 'speak', audio: 'human_speech.wav', interrupt: true})")
        while time.monotonic() < t0 + seconds:
            time.sleep(0.05)
        wall = time.monotonic() - t0
        end = [facts(p) for p in pages]
        rates = [1000 * (f["frames"] - a["frames"]) / (f["framesAt"] - a["framesAt"]) for f, a in zip(end, start)]
        snaps = {s["id"]: s for s in server.get("/api/sessions")[1]}
        time.sleep(1.0)  # the last commands' frames
        latency = [ms for p in pages for ms in facts(p)["latency"]]
        server_side = [ms for p in pages for ms in facts(p)["serverLatency"]]
        health = server.get("/health")[1]
    finally:
        browser.close()
    return {
        "sessions": sessions,
        "seconds": round(wall, 2),
        "fps": [round(r, 2) for r in rates],
        "held_frames": [snaps[i]["held_frames"] - held0.get(i, 0) for i in ids if i in snaps],
        "latency_ms": {
            "n": len(latency),
            "p50": statistics.median(latency) if latency else None,
            "p95": percentile(latency, 0.95) if latency else None,
            "max": max(latency) if latency else None,
        },
        "server_latency_ms": {
            "p50": statistics.median(server_side) if server_side else None,
            "p95": percentile(server_side, 0.95) if server_side else None,
        },
        "ahead_ms": [snaps[i]["ahead_ms"] for i in ids if i in snaps],
        "worker_load": health.get("worker_load"),
    }


def cpu() -> str:
    text = Path("/proc/cpuinfo").read_text()
    model = re.search(r"model name\s*:\s*(.*)", text)
    flags = set(re.search(r"flags\s*:\s*(.*)", text).group(1).split())
    wide = sorted(f for f in flags if f.startswith(("avx512", "amx")))
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA")
    return (
        f"{model.group(1) if model else '?'}, {os.cpu_count()} cores, {'avx2' if 'avx2' in flags else 'no avx2'}, "
        f"{'+'.join(wide[:4]) + ('...' if len(wide) > 4 else '') if wide else 'no avx512/amx'}"
        + (f"; torch limited to {isa} (ONEDNN_MAX_CPU_ISA/ATEN_CPU_CAPABILITY)" if isa else "")
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--speaks", type=int, default=8, help="speak commands per page")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--floor", action="store_true", help="limit the server's torch to AVX2 (the CPU floor)")
    a = ap.parse_args()
    extra = ["--max-sessions", str(a.sessions)] + (["--workers", str(a.workers)] if a.workers else [])
    server = Server(*extra, env=FLOOR if a.floor else None)
    try:
        with playwright()() as pw:
            result = measure(server, pw, a.sessions, a.seconds, a.speaks)
    except BaseException:
        print(server.log(), file=sys.stderr)
        raise
    finally:
        server.stop()
    if a.floor:
        os.environ.update(FLOOR)  # for cpu()'s line: the server ran with these
    print(json.dumps({"cpu": cpu(), **result}))


if __name__ == "__main__":
    main()
