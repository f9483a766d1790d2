"""`flowact serve`'s parts without a server: what may be read (names, uploads), the worker pool,
the WebRTC output's timestamps and keyframes, the RTP origin, the microphone path into a live
session, and the command line's refusals."""

import asyncio
import os
import shutil
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError
from PIL import Image

from flowact.live.speech import ListenChannel
from flowact.media.audio import load_audio
from flowact.serve import media as M
from flowact.serve.media import MediaLibrary, Refused
from flowact.serve.sessions import LATE_EVERY, LATE_WINDOW, Lateness
from flowact.serve.streams import StreamOutput
from flowact.serve.tracks import RtpOrigin, ViewerTracks
from flowact.serve.workers import LIVE, SETUP, WorkerPool
from helpers import TINY, make_inputs, run_cli

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def library(tmp_path):
    media, outside, uploads = tmp_path / "media", tmp_path / "outside", tmp_path / "uploads"
    for d in (media, outside, uploads):
        d.mkdir()
    shutil.copy(EXAMPLES / "speech_en.wav", media / "hello.wav")
    (media / "people").mkdir()
    Image.new("RGB", (32, 32), (200, 100, 50)).save(media / "people" / "ada.png")
    Image.new("RGB", (32, 32)).save(outside / "secret.png")
    (media / "link.png").symlink_to(outside / "secret.png")
    (media / "notes.txt").write_text("not media")
    lib = MediaLibrary(media, uploads=uploads)
    yield lib, media, outside
    lib.close()


def refused(fn, *args) -> Refused:
    with pytest.raises(Refused) as info:
        fn(*args)
    return info.value


def test_names_resolve_inside_the_media_folder_then_the_examples(library):
    lib, media, _ = library
    assert lib.resolve("hello.wav", "audio") == (media / "hello.wav").resolve()
    assert lib.resolve("people/ada.png", "picture") == (media / "people" / "ada.png").resolve()
    assert lib.resolve("astronaut.jpg", "picture") == M.BUNDLED / "astronaut.jpg"  # the bundled examples
    listed = lib.listing()
    assert "hello.wav" in listed["audio"] and "human_speech.wav" in listed["audio"]
    assert {"astronaut.jpg", "character_1.png"} <= set(listed["pictures"]) and "link.png" not in listed["pictures"]


@pytest.mark.parametrize(
    "name, status",
    [
        ("../outside/secret.png", 403),
        ("people/../../outside/secret.png", 403),
        ("link.png", 403),  # a link inside the folder that points out of it
        ("/etc/hostname.png", 403),
        ("~root/x.png", 403),
        ("missing.png", 404),
        ("notes.txt", 415),
        ("a\\..\\b.png", 400),
        ("", 400),
    ],
)
def test_names_outside_the_roots_are_refused_before_any_file_is_read(library, monkeypatch, name, status):
    lib, _, outside = library
    opened = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
    err = refused(lib.resolve, name, "picture")
    assert err.status == status, str(err)
    assert opened == []  # nothing opened, inside the roots or out
    if name:
        assert name.split("/")[-1][:8] in str(err) or status == 400


def test_an_absolute_path_to_a_real_file_is_refused(library):
    lib, _, outside = library
    assert refused(lib.resolve, str(outside / "secret.png"), "picture").status == 403


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height pixels and holds none (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IEND", b"")
    )


def test_uploads_are_checked_capped_and_kept_under_their_own_names(library, tmp_path, monkeypatch):
    lib, _, _ = library
    img, wav = make_inputs(tmp_path)
    facts = lib.save_upload(img.read_bytes(), "me.png", "picture")
    assert facts["kind"] == "picture" and (facts["width"], facts["height"]) == (80, 100)
    assert lib.resolve(facts["name"], "picture").read_bytes() == img.read_bytes()
    assert lib.display(facts["name"]) == "me.png"
    assert lib.save_upload(wav.read_bytes(), "hi.wav", "audio")["seconds"] == pytest.approx(1.0, abs=0.01)

    bad = refused(lib.save_upload, b"\x89PNG not really", "bad.png", "picture")
    assert bad.status == 400 and "bad.png" in str(bad) and "not a readable image" in str(bad)
    for side in (8_000, 20_000):  # over our budget; over PIL's own bomb limit
        bomb = refused(lib.save_upload, png_header_only(side, side), "big.png", "picture")
        assert bomb.status == 413 and "big.png" in str(bomb) and "megapixels" in str(bomb)
    assert refused(lib.save_upload, b"RIFF....WAVEjunk", "x.wav", "audio").status == 400
    assert refused(lib.save_upload, img.read_bytes(), "x.exe", "picture").status == 415
    assert refused(lib.save_upload, b"", "empty.png", "picture").status == 400
    monkeypatch.setitem(M.MAX_BYTES, "picture", 1000)
    assert refused(lib.save_upload, img.read_bytes(), "me.png", "picture").status == 413
    monkeypatch.setattr(M, "MAX_AUDIO_SECONDS", 0.5)
    assert refused(lib.save_upload, wav.read_bytes(), "long.wav", "audio").status == 413
    assert sorted(p.name for p in lib.uploads.iterdir() if not p.name.startswith("upload-")) == []  # no leftovers


def test_uploads_beyond_the_cap_evict_the_oldest(library, monkeypatch):
    lib, _, _ = library
    monkeypatch.setattr(M, "MAX_UPLOADS", 2)
    names = []
    for i in range(3):
        buf = Path(lib.uploads) / f"src{i}.png"
        Image.new("RGB", (20, 20), (i * 60, 0, 0)).save(buf)
        names.append(lib.save_upload(buf.read_bytes(), f"p{i}.png", "picture")["name"])
        buf.unlink()
        time.sleep(0.01)
    kept = sorted(p.name for p in lib.uploads.glob("upload-*"))
    assert kept == sorted(names[1:])


def test_the_pool_runs_the_chunk_due_soonest_first_then_set_up_work():
    pool = WorkerPool(1)
    gate, order = threading.Event(), []
    now = time.perf_counter()
    try:
        blocker = threading.Thread(target=pool.run, args=(LIVE, gate.wait))
        blocker.start()
        time.sleep(0.05)  # the one worker is now busy: the next three queue
        waiting = [
            threading.Thread(target=pool.run, args=(SETUP, order.append, "setup")),
            threading.Thread(target=pool.run, args=(LIVE, order.append, "due later"), kwargs={"due": now + 2}),
            threading.Thread(target=pool.run, args=(LIVE, order.append, "due soon"), kwargs={"due": now + 1}),
        ]
        for t in waiting:
            t.start()
            time.sleep(0.05)
        gate.set()
        for t in [blocker, *waiting]:
            t.join(5)
        assert order == ["due soon", "due later", "setup"]
        with pytest.raises(ZeroDivisionError):
            pool.run(LIVE, lambda: 1 / 0)
        assert 0 < pool.load() <= 1
    finally:
        pool.close()


@pytest.fixture
def loop():
    lp = asyncio.new_event_loop()
    t = threading.Thread(target=lp.run_forever, daemon=True)
    t.start()
    yield lp
    lp.call_soon_threadsafe(lp.stop)
    t.join(5)
    lp.close()


def drain(loop, track, n: int) -> list:
    return [asyncio.run_coroutine_threadsafe(track.recv(), loop).result(5) for _ in range(n)]


def test_a_session_falling_behind_is_said_once_a_while():
    """The stream process reports running counts twice a second; a session is said to fall behind when
    more than a tenth of its last 10 s of frames were held, not before a full window, then at most
    every 30 s; a session that keeps up never is."""
    late = Lateness()
    t, frames, held = 0.0, 0, 0

    def run(seconds: float, held_share: float) -> list[float]:
        nonlocal t, frames, held
        said = []
        for _ in range(int(seconds * 2)):
            t, frames, held = t + 0.5, frames + 12, held + round(12 * held_share)
            if (share := late.update(t, frames, held)) is not None:
                said.append(share)
        return said

    assert run(30, 0.0) == [] and late.share == 0.0  # keeping up
    assert run(3, 0.25) == []  # 3 s of holding a quarter: 7.5% of the window ...
    said = run(LATE_WINDOW, 0.25)  # ... then more: said once, when the window's share passes 10%
    assert len(said) == 1 and 0.1 < said[0] <= 0.26 and late.share == pytest.approx(0.25)
    assert run(LATE_EVERY - LATE_WINDOW - 1, 0.25) == []  # not again within 30 s
    assert len(run(LATE_WINDOW, 0.25)) == 1  # once 30 s have passed
    assert run(LATE_WINDOW + 1, 0.0) == [] and late.share == 0.0  # caught up


def test_the_stream_output_encodes_only_while_watched_and_starts_on_a_keyframe():
    sent = []
    out = StreamOutput(lambda *msg: sent.append(msg), "s1", 25)
    frame, pcm = np.full((48, 64, 3), 120, np.uint8), np.full(640, 0.5, np.float32)
    out.write(frame, pcm)  # nobody watches yet: nothing is encoded or sent
    assert sent == [] and out.frames == 1
    out.watching = True
    for _ in range(3):
        out.write(frame, pcm)
    out.key_next = True  # the web process dropped a frame
    out.write(frame, pcm)
    assert [m[:3] for m in sent] == [("media", "s1", slot) for slot in (1, 2, 3, 4)]
    keys = [[key for _, key in m[3]] for m in sent]
    assert keys == [[True], [False], [False], [True]], keys
    pcm16 = np.frombuffer(sent[0][4], "<i2")
    assert len(pcm16) == 640 and pcm16[0] == round(0.5 * 32767)


def test_viewer_tracks_stamp_slots_and_ask_for_what_they_need(loop):
    asked = []
    tracks = ViewerTracks(25, watch=lambda: asked.append("watch"), keyframe=lambda: asked.append("keyframe"))
    sent = []
    out = StreamOutput(lambda *msg: sent.append(msg), "s1", 25)
    out.watching = True
    for _ in range(3):
        out.write(np.zeros((48, 64, 3), np.uint8), np.zeros(640, np.float32))
    for _, _, slot, packets, pcm16 in sent:
        loop.call_soon_threadsafe(tracks.deliver, slot, packets, pcm16)
    video, audio = drain(loop, tracks.video, 3), drain(loop, tracks.audio, 3)
    assert asked == ["watch"]  # the first frame the sender asked for
    assert [p.pts for p in video] == [0, 3600, 7200] and video[0].is_keyframe  # slot n -> n * 90000 / 25
    assert [a.pts for a in audio] == [0, 640, 1280] and {a.samples for a in audio} == {640}
    for _ in range(5):  # the sender falls behind: the track keeps 3 and asks for a keyframe
        loop.call_soon_threadsafe(tracks.deliver, 9, sent[1][3], sent[1][4])
    time.sleep(0.1)
    assert "keyframe" in asked and tracks.video.dropped == 2
    loop.call_soon_threadsafe(tracks.end)
    time.sleep(0.05)
    with pytest.raises(MediaStreamError):  # what was kept, then the end
        drain(loop, tracks.video, 4)
    assert tracks.video.readyState == "ended"


def test_the_rtp_origin_is_announced_once_two_frames_agree():
    class Sender:
        _RTCRtpSender__rtp_timestamp = 0

    class Frame:
        def __init__(self, pts):
            self.pts = pts

    announced = []
    origin, sender = RtpOrigin(announced.append), Sender()
    origin.sender = sender
    base = (1 << 32) - 5000  # the sum wraps
    for pts in (0, 3600, 7200, 10800):
        origin(Frame(pts))
        sender._RTCRtpSender__rtp_timestamp = (base + pts) % (1 << 32)  # what aiortc stamped on it
    assert announced == [base]


def test_listen_channel_hears_streamed_pieces_one_after_another():
    ch = ListenChannel()
    ch.extend(np.full(320, 1.0, np.float32), 10.0)
    ch.extend(np.full(320, 2.0, np.float32), 10.0)  # arrived together: heard after the first
    got = ch.poll(10.1)
    assert len(got) == 640 and got[0] == 1.0 and got[-1] == 2.0
    ch.extend(np.full(160, 3.0, np.float32), 11.0)  # after a gap: from its arrival
    assert len(ch.poll(10.5)) == 0 and list(ch.poll(11.5)) == [3.0] * 160


def test_a_live_session_writes_to_a_given_output_and_hears_the_microphone(tmp_path):
    from flowact.config import load_preset
    from flowact.live import EventLog, LiveOptions, LiveSession
    from flowact.routes import load_route, route_of

    p = load_preset(TINY)
    img, _ = make_inputs(tmp_path)
    reference, face = route_of(p).load_picture(p, img)
    route = load_route(p, random_weights=True, threads=1)

    class Output:
        frames, shapes = 0, set()

        def write(self, frame, pcm):
            self.frames += 1
            self.shapes.add((frame.shape, len(pcm)))
            return time.perf_counter()

        def close(self):
            return self.frames

    events, out = [], Output()
    session = LiveSession(route, reference, LiveOptions(duration=3.0), EventLog(on_event=events.append), output=out)
    voice = load_audio(EXAMPLES / "speech_en.wav").samples[8000:40000]

    def microphone():  # 20 ms pieces in real time, as the browser's track delivers them
        while session.t0 is None:
            time.sleep(0.01)
        for i in range(0, len(voice), 320):
            session.hear(voice[i : i + 320])
            time.sleep(0.02)

    threading.Thread(target=microphone, daemon=True).start()
    report = session.run()
    assert report.frames == out.frames == 75 and not (tmp_path / "live.mp4").exists()
    assert out.shapes == {((p.video.height, p.video.width, 3), 640)}
    heard = [e["user"] for e in events if e["event"] == "chunk"]
    assert max(heard) >= 0.5, heard  # voiced, not a sum of pieces on top of each other
    assert "listening" in {e["state"] for e in events if e["event"] == "state"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--host", "0.0.0.0"], "--token"),
        (["--host", "192.168.1.20", "--token", "short"], "at least 8"),
        (["--max-sessions", "0"], "--max-sessions"),
        (["--media", "/no/such/folder"], "--media"),
    ],
)
def test_serve_refuses_unsafe_or_bad_options_before_listening(args, message):
    code, _, err = run_cli(["serve", "--port", "0", *args])
    assert code == 2 and message in err, err


def test_the_bundled_examples_ship_with_the_package():
    for name in ("astronaut.jpg", "character_1.png", "human_speech.wav", "human_speech.COPYING"):
        assert (M.BUNDLED / name).is_file(), name
    assert (M.BUNDLED / "human_speech.wav").read_bytes() == (EXAMPLES / "human_speech.wav").read_bytes()
    assert os.path.getsize(M.BUNDLED / "human_speech.wav") < 200_000


def test_serve_imports_only_what_it_may_and_only_the_cli_imports_it():
    from test_imports import import_graph

    allowed = ("flowact.live", "flowact.routes", "flowact.media", "flowact.config", "flowact.errors", "flowact.serve")
    graph = import_graph()
    serve = {m: deps for m, deps in graph.items() if m.startswith("flowact.serve")}
    assert len(serve) >= 6
    assert [f"{m} -> {d}" for m, deps in serve.items() for d in deps if not d.startswith(allowed)] == []
    users = {
        m
        for m, deps in graph.items()
        if not m.startswith("flowact.serve") and any(d.startswith("flowact.serve") for d in deps)
    }
    assert users == {"flowact.cli_serve"}


def test_the_page_and_the_examples_are_package_data():
    """Every file of serve/static and serve/examples matches the package data pyproject.toml ships
    (a pip-installed server has its page and its examples)."""
    import fnmatch
    import re

    root = Path(__file__).resolve().parents[1]
    section = (root / "pyproject.toml").read_text().split("[tool.setuptools.package-data]")[1].split("\n[")[0]
    globs = re.findall(r'"([^"]+)"', re.search(r"^flowact = \[(.*?)\]", section, re.M | re.S).group(1))
    pkg = root / "src" / "flowact"
    files = [f.relative_to(pkg).as_posix() for d in ("serve/static", "serve/examples") for f in (pkg / d).iterdir()]
    assert {"serve/static/index.html", "serve/static/flowact.js", "serve/examples/astronaut.jpg"} <= set(files)
    assert [f for f in files if not any(fnmatch.fnmatch(f, g) for g in globs)] == []
