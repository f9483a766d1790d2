"""`flowact serve` through its HTTP and WebSocket API, no browser: the token, names outside the media
folder refused with nothing opened, bad uploads answered while the server goes on, --max-sessions,
commands and their errors, a session's end and its memory, and a clean stop on SIGINT."""

import asyncio
import errno
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from serve_browser import Server, hard_limit

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "test-token-123"


def fifo_has_reader(path: Path) -> bool:
    """Whether anything has the FIFO open for reading (opening it to write without blocking fails
    with ENXIO when nobody reads): the probe that a refused name was never opened."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        assert exc.errno == errno.ENXIO, exc
        return False
    os.close(fd)
    return True


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve_api")
    media, outside = tmp / "media", tmp / "outside"
    media.mkdir()
    outside.mkdir()
    for name in ("secret.png", "secret.wav"):
        os.mkfifo(outside / name)
    (media / "link.png").symlink_to(outside / "secret.png")
    (media / "link.wav").symlink_to(outside / "secret.wav")
    shutil.copy(ROOT / "examples" / "speech_en.wav", media / "hello.wav")
    noise = (np.random.default_rng(0).random((240, 240, 3)) * 255).astype(np.uint8)
    Image.fromarray(noise).save(tmp / "noise.png")  # a photograph-like picture with no face
    with hard_limit(120, "starting flowact serve"):
        server = Server("--token", TOKEN, "--max-sessions", "1", "--media", str(media))
    try:
        yield server, tmp
    finally:
        server.kill()


def test_the_token_guards_the_api_and_health_stays_open(served):
    server, _ = served
    status, health = server.get("/health", token=None)
    assert status == 200 and health["ok"] is True and health["max_sessions"] == 1
    assert server.get("/api/media", token=None)[0] == 401
    assert server.get("/api/media", token="wrong-token-1")[0] == 401
    status, listed = server.get("/api/media")
    assert status == 200 and "hello.wav" in listed["audio"] and "astronaut.jpg" in listed["pictures"]
    assert server.get(f"/api/media?token={TOKEN}", token=None)[0] == 200
    # a page of another site, in the user's browser, may not use the API (its Origin says so)
    code, body = server.post("/api/sessions", {"image": "astronaut.jpg"}, headers={"Origin": "http://evil.example"})
    assert code == 403 and "evil.example" in body["error"], body
    assert server.get("/api/media", headers={"Origin": server.url.rstrip("/")})[0] == 200


def test_names_outside_the_media_folder_are_refused_and_never_opened(served):
    server, tmp = served
    with hard_limit(60, "refusing names"):
        for name, status in [
            ("../outside/secret.png", 403),
            (str(tmp / "outside" / "secret.png"), 403),
            ("link.png", 403),
            ("/etc/passwd", 403),
            ("missing.png", 404),
        ]:
            code, body = server.post("/api/sessions", {"image": name})
            assert code == status and name.split("/")[-1] in body["error"], (name, code, body)
        for path in ("/static/../app.py", "/static/%2e%2e/app.py", "/static/..%2fapp.py"):
            assert 400 <= server.get(path)[0] < 500, path
    assert not fifo_has_reader(tmp / "outside" / "secret.png")


def test_bad_uploads_are_answered_and_the_server_goes_on(served):
    server, tmp = served
    with hard_limit(90, "uploads"):
        code, body = server.post("/api/uploads?kind=picture&name=bad.png", b"\x89PNG\r\n\x1a\n not an image")
        assert code == 400 and body["error"].startswith("bad.png: not a readable image"), body
        code, body = server.post("/api/uploads?kind=audio&name=bad.wav", b"RIFF\x00\x00\x00\x00WAVEjunk")
        assert code == 400 and "bad.wav" in body["error"], body
        code, body = server.post("/api/uploads?kind=picture&name=huge.png", b"\0" * (10 * 2**20 + 1))
        assert code == 413 and "huge.png" in body["error"], body
        code, body = server.post("/api/uploads?kind=picture&name=run.exe", b"MZ")
        assert code == 415, body
        code, body = server.post("/api/uploads?kind=picture&name=noise.png", (tmp / "noise.png").read_bytes())
        assert code == 201 and body["width"] == 240, body
        code, refused = server.post("/api/sessions", {"image": body["name"]})  # a photo without a face
        assert code == 400 and "noise.png" in refused["error"] and "no face" in refused["error"], refused
        code, body = server.post("/api/sessions/nope/offer", {"sdp": "v=0", "type": "offer"})
        assert code == 404, body
        status, health = server.get("/health")
        assert status == 200 and health["sessions"] == 0


async def ws_events(url: str, send: list, until, seconds: float) -> list:
    import aiohttp

    got = []
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(url) as ws:
            for msg in send:
                await ws.send_str(msg)
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                try:
                    m = await ws.receive(timeout=max(0.05, deadline - time.monotonic()))
                except asyncio.TimeoutError:
                    break
                if m.type.name != "TEXT":
                    break
                got.append(json.loads(m.data))
                if until(got):
                    break
    return got


def test_a_session_takes_commands_refuses_bad_ones_ends_and_is_freed(served):
    server, tmp = served
    with hard_limit(120, "a session through the API"):
        code, s = server.post("/api/sessions", {"image": "astronaut.jpg"})
        assert code == 201 and (s["width"], s["height"], s["fps"]) == (512, 512, 25), s
        sid = s["id"]
        code, busy = server.post("/api/sessions", {"image": "astronaut.jpg"})
        assert code == 503 and "--max-sessions 1" in busy["error"], busy

        post = server.post
        assert post(f"/api/sessions/{sid}/commands", {"cmd": "dance"})[0] == 400
        code, body = post(f"/api/sessions/{sid}/commands", {"cmd": "speak", "audio": "../outside/secret.wav"})
        assert code == 403, body
        assert post(f"/api/sessions/{sid}/commands", {"cmd": "speak", "audio": "link.wav"})[0] == 403
        code, body = post(f"/api/sessions/{sid}/commands", [{"cmd": "speak", "audio": "hello.wav", "id": "hi"}])
        assert code == 202 and body["accepted"][0]["id"] == "hi", body
        assert post(f"/api/sessions/{sid}/offer", {"sdp": "not sdp", "type": "offer"})[0] == 400

        url = server.url.replace("http", "ws") + f"api/sessions/{sid}/ws?token={TOKEN}"
        events = asyncio.run(
            ws_events(
                url,
                ["{not json", json.dumps({"cmd": "state", "state": "thinking", "id": "t"})],
                lambda got: any(e.get("event") == "state" and e.get("state") == "thinking" for e in got),
                30,
            )
        )
        kinds = [e["event"] for e in events]
        assert kinds[0] == "session" and events[0]["id"] == sid, kinds
        assert any(e["event"] == "error" and "not JSON" in e["message"] for e in events), events
        assert any(e["event"] == "state" and e["state"] == "thinking" for e in events), kinds

        assert server.request("DELETE", f"/api/sessions/{sid}")[0] == 202
        deadline = time.monotonic() + 20  # the stream process reports what it holds twice a second
        while time.monotonic() < deadline and (h := server.get("/health")[1])["sessions"] + h["unreleased"]:
            time.sleep(0.2)
        health = server.get("/health")[1]
        assert health["sessions"] == 0 and health["unreleased"] == 0, health
        assert server.get(f"/api/sessions/{sid}")[0] == 404
    assert not fifo_has_reader(tmp / "outside" / "secret.wav")


def test_the_server_stops_cleanly_on_sigint(served):
    server, _ = served
    code, s = server.post("/api/sessions", {"image": "astronaut.jpg"})  # a running session to end
    assert code == 201, s
    time.sleep(1.0)
    with hard_limit(60, "stopping flowact serve"):
        assert server.stop(timeout=30) == 0, server.log()
    assert "flowact serve: stopping" in server.log()
    assert not [line for line in server.lines if "Traceback" in line], server.log()
