"""`flowact serve` in a real browser: headless Chromium (the system's, driven by Playwright) with a
fake microphone saying examples/human_speech.wav. The automation contract's page gets video with
speech and hears the microphone; three pages at once react to speak and two stay real time; a bad
upload shows its error on the page while the server goes on; an assistant (examples/serve_client.py)
drives a session a page watches; a page that leaves ends its session and frees it.

Never skipped: without Chromium or Playwright these fail with a message naming what to install
(scripts/setup.sh installs both). Every test has a hard time limit."""

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from serve_browser import LIGHT_PAGE, Server, chromium, facts, hard_limit, launch, playwright, wait_facts

ROOT = Path(__file__).resolve().parents[1]
FPS = 25
# Bounds a 2-core CI machine running the server and the pages meets; the measured figures (and the
# conditions they hold in) are in docs/serve.md.
MAX_LATENCY_MS = 2500
MIN_RATE = 0.9 * FPS  # frames a second each page receives
# Of the frames: shown twice because their chunk was late. Two sessions keep up with the clock on a
# 2-core machine: they hold at most this share. Three do on the 2-core EPYC with AVX-512 (0-1.3%), not
# on a real AVX2-only one (5-36% in this test's 8 s at 256 px, 7 runs, 37-73% at 512: docs/serve.md), so with
# three the test only asks that no stream stalls (a stalled one holds nearly all its frames).
MAX_HELD_SHARE = 0.20
STALLED_SHARE = 0.75


@pytest.fixture
def pages(env):
    """New pages in the module's browser; closed (their sessions end) even when the test fails."""
    server, browser = env
    opened = []

    def new_page(**kw):
        opened.append(browser.new_page(**kw))
        return opened[-1]

    yield new_page
    with hard_limit(60, "closing the pages"):
        for page in opened:
            page.close()
        wait_released(server)


@pytest.fixture(scope="module")
def env():
    try:
        chromium()
        start = playwright()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    with hard_limit(150, "starting flowact serve and Chromium"):
        server = Server("--max-sessions", "3", "--media", str(ROOT / "examples"))
        pw = start().start()
        browser = launch(pw)
    try:
        yield server, browser
    finally:
        with hard_limit(60, "stopping Chromium and flowact serve"):
            try:
                browser.close()
                pw.stop()
            finally:
                assert server.stop() == 0, server.log()


def wait_released(server: Server, seconds: float = 20) -> dict:
    """Until no session runs and none is still in memory (the stream process reports twice a second)."""
    deadline, health = time.monotonic() + seconds, {}
    while time.monotonic() < deadline:
        health = server.get("/health")[1]
        if health["sessions"] == 0 and health["unreleased"] == 0:
            return health
        time.sleep(0.2)
    raise AssertionError(f"sessions not ended and freed within {seconds:.0f} s: {health}")


def test_the_autoplay_page_gets_video_and_speech_and_hears_the_microphone(env, pages):
    server, _ = env
    seen = set()

    def saw(state):
        return lambda f: seen.add(f["state"]) or state in seen

    with hard_limit(120, "the autoplay page"):
        page = pages()
        page.goto(server.url + "?image=astronaut.jpg&say=human_speech.wav&autoplay=1")
        f = wait_facts(page, lambda f: seen.add(f["state"]) or (f["frames"] >= 25 and f["audio"]), 60, "video + audio")
        assert (f["width"], f["height"]) == (512, 512) and f["status"] == "live", f
        f = wait_facts(page, lambda f: saw("speaking")(f) and len(f["latency"]) == 1, 30, "the speak command shown")
        assert 0 < f["latency"][0] < MAX_LATENCY_MS, f
        print(f"speak -> first frame shown in the browser: {f['latency'][0]} ms (server side {f['serverLatency']})")
        wait_facts(page, lambda f: f["audioEnergy"] > 0.01, 10, "speech in the audio track")
        # the fake microphone's voice, heard through WebRTC by the planner (nothing else makes it listen)
        wait_facts(page, saw("listening"), 30, f"listening to the microphone (states seen: {seen})")
        first, t0 = facts(page)["frames"], time.monotonic()
        page.wait_for_timeout(3000)
        got = (facts(page)["frames"] - first) / (time.monotonic() - t0)
        assert MIN_RATE <= got <= 1.15 * FPS, f"{got:.1f} frames a second received"
        assert server.get("/health")[1]["sessions"] == 1
        page.close()  # the browser leaves: its session ends and is freed
        wait_released(server)


def held_and_rates(server, pages: list, seconds: float) -> tuple[dict, list, float]:
    """Over `seconds` (the pages' waits run the browser): each session's frames held, each page's frames a second."""
    held0 = {s["id"]: s["held_frames"] for s in server.get("/api/sessions")[1]}
    start, t0 = [facts(p) for p in pages], time.monotonic()
    pages[-1].wait_for_timeout(1000 * seconds)
    wall = time.monotonic() - t0
    got = [facts(p) for p in pages]
    held = {s["id"]: s["held_frames"] - held0[s["id"]] for s in server.get("/api/sessions")[1] if s["id"] in held0}
    rates = [1000 * (f["frames"] - a["frames"]) / (f["framesAt"] - a["framesAt"]) for f, a in zip(got, start)]
    return held, rates, wall


def test_three_pages_at_once_react_and_two_stay_real_time(env, pages, tmp_path):
    """Three sessions at once, each in its own page, on the photo route at 256x256 (the same route as
    512x512 at a quarter of the warp and encoding): every page gets 25 frames a second, a fourth session
    is refused, each page's speak shows in that page, no stream stalls. Once one page leaves, the two
    others keep up with the clock. Whether three stay fully real time is the machine's capacity, which
    the benchmark measures (docs/serve.md, Measured)."""
    server, _ = env
    portrait = tmp_path / "portrait.png"
    Image.open(ROOT / "examples" / "astronaut.jpg").convert("RGB").resize((256, 256)).save(portrait)
    code, up = server.post("/api/uploads?kind=picture&name=portrait.png", portrait.read_bytes())
    assert code == 201, up
    with hard_limit(180, "three pages at once"):
        three = [pages(viewport=LIGHT_PAGE["viewport"]) for _ in range(3)]
        for p in three:
            p.goto(server.url + f"?image={up['name']}&autoplay=1" + LIGHT_PAGE["query"])
        for p in three:  # all three running for ~2 s: the set-up of one no longer weighs on the others
            wait_facts(p, lambda f: f["frames"] >= 50, 60, "video on every page")
        assert {(facts(p)["width"], facts(p)["height"]) for p in three} == {(256, 256)}
        code, busy = server.post("/api/sessions", {"image": "astronaut.jpg"})
        assert code == 503 and "--max-sessions 3" in busy["error"], busy

        held0 = {s["id"]: s["held_frames"] for s in server.get("/api/sessions")[1]}
        start, t0 = [facts(p) for p in three], time.monotonic()
        for i, p in enumerate(three):  # each page speaks once, at its own moment
            p.wait_for_timeout(700 + 300 * i)
            p.evaluate("() => send({cmd: 'speak', audio: 'human_speech.wav'})")
        three[-1].wait_for_timeout(max(0, 8000 - 1000 * (time.monotonic() - t0)))
        wall = time.monotonic() - t0
        got = [facts(p) for p in three]
        held = {s["id"]: s["held_frames"] - held0[s["id"]] for s in server.get("/api/sessions")[1]}
        rates = [1000 * (f["frames"] - a["frames"]) / (f["framesAt"] - a["framesAt"]) for f, a in zip(got, start)]
        print(f"3 pages: {[round(r, 1) for r in rates]} fps, held {held} in {wall:.1f} s")
        assert all(r >= MIN_RATE for r in rates), f"frames a second received: {rates}"
        assert all(h <= STALLED_SHARE * FPS * wall for h in held.values()), f"frames held for late chunks: {held}"
        for p in three:
            f = wait_facts(p, lambda f: len(f["latency"]) == 1, 20, "the speak command shown")
            assert 0 < f["latency"][0] < MAX_LATENCY_MS, f
        print(f"3 pages: speak -> first frame shown {[facts(p)['latency'][0] for p in three]} ms")

        gone = facts(three[0])["session"]
        three[0].close()  # its session ends and is freed; the other two go on
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(s["id"] == gone for s in server.get("/api/sessions")[1]):
            time.sleep(0.2)
        two = three[1:]
        two[-1].wait_for_timeout(1000)  # the freed core taken up
        held, rates, wall = held_and_rates(server, two, 6.0)
        print(f"2 pages: {[round(r, 1) for r in rates]} fps, held {held} in {wall:.1f} s")
        assert len(held) == 2 and gone not in held, held
        assert all(r >= MIN_RATE for r in rates), f"frames a second received: {rates}"
        assert all(h <= MAX_HELD_SHARE * FPS * wall for h in held.values()), f"frames held for late chunks: {held}"


def test_a_bad_upload_shows_its_error_and_the_server_goes_on(env, pages, tmp_path):
    server, _ = env
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nthis is not an image")
    faceless = tmp_path / "wall.png"
    Image.fromarray((np.random.default_rng(1).random((300, 300, 3)) * 255).astype(np.uint8)).save(faceless)
    with hard_limit(90, "bad uploads on the page"):
        page = pages()
        page.goto(server.url + "?mic=0")
        page.set_input_files("#picture-file", str(bad))
        f = wait_facts(page, lambda f: f["errors"], 20, "the upload's error")
        assert f["errors"][-1].startswith("broken.png: not a readable image"), f["errors"]
        assert "broken.png: not a readable image" in page.inner_text("#errors")
        page.set_input_files("#picture-file", str(faceless))  # a good file: it uploads
        page.wait_for_function("() => document.querySelector('#picture').value.startsWith('upload-')")
        page.click("#start")  # a photo with no face: refused when the session starts
        f = wait_facts(page, lambda f: len(f["errors"]) >= 2, 30, "the picture's error")
        assert "wall.png" in f["errors"][-1] and "no face" in f["errors"][-1], f["errors"]
        assert f["status"] == "error"
        status, health = server.get("/health")
        assert status == 200 and health["ok"] and health["sessions"] == 0, health


def test_an_assistant_drives_a_session_a_page_watches(env, pages):
    server, _ = env
    with hard_limit(120, "an assistant and a watching page"):
        client = subprocess.Popen(
            [sys.executable, str(ROOT / "examples" / "serve_client.py"), "--server", server.url.rstrip("/")],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            watch = client.stdout.readline().strip()
            assert watch.startswith(f"watch: {server.url.rstrip('/')}/?session="), watch
            page = pages()
            page.goto(watch.removeprefix("watch: ") + "&mic=0")
            seen = set()
            wait_facts(page, lambda f: seen.add(f["state"]) or "speaking" in seen, 40, "speech streamed by the client")
            out, _ = client.communicate(timeout=60)
        finally:
            if client.poll() is None:
                client.kill()
        assert client.returncode == 0, out
        final = json.loads(out.strip().splitlines()[-1])
        assert final["viewer"] and final["frames"] > 100, final
