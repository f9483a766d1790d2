"""No hang, ever: however slow a stage of the pipeline is (decode slower than any wait in the
hand-offs, an encoder that is slow to start), end-of-stream gets through and the call returns;
a stage that dies ends the run with its error, named, while the output is still finalised
playable with what was made. Render (overlapped and inline decode), live, the CLI, and the
writer thread. Each call runs under a deadline, so a regression fails instead of hanging."""

import stat
import threading
import time

import numpy as np
import pytest

from flowact import handoff
from flowact.errors import FlowactError
from flowact.handoff import Stage, StageFailed
from flowact.live.events import EventLog
from flowact.live.session import LiveOptions, run_live
from flowact.media.ffmpeg import VideoWriter, find_ffmpeg
from flowact.media.image import load_image
from flowact.media.probe import probe
from flowact.render import render
from flowact.routes import load_route
from flowact.stream.generator import StreamGenerator
from helpers import TINY, make_inputs, run_cli

DEADLINE = 60.0


def bounded(fn, seconds: float = DEADLINE):
    """fn() in a thread; fails the test if it is still running after `seconds`."""
    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still running after {seconds} s: a hang"
    if "error" in box:
        raise box["error"]
    return box["value"]


@pytest.fixture
def short_waits(monkeypatch):
    """Waits between liveness checks far shorter than any stage below takes."""
    monkeypatch.setattr(handoff, "POLL_SECONDS", 0.005)


@pytest.fixture(scope="module")
def route():
    return load_route(TINY, device="cpu", random_weights=True)


def patch_decode(monkeypatch, seconds: float = 0.0, fail_at: int | None = None):
    """StreamGenerator.decode sleeping `seconds` per chunk, and raising on call number
    `fail_at` (1-based, counting every generator's calls: live warms up with two)."""
    calls = [0]
    real = StreamGenerator.decode

    def decode(self, latents, mel_windows=None, motion=None, plan=None):
        calls[0] += 1
        time.sleep(seconds)
        if fail_at is not None and calls[0] >= fail_at:
            raise ValueError("decode boom")
        return real(self, latents, mel_windows, motion, plan)

    monkeypatch.setattr(StreamGenerator, "decode", decode)
    return calls


# ---- the hand-off itself ------------------------------------------------------------------


def test_stage_end_of_stream_waits_out_a_slow_consumer(short_waits):
    done = []
    stage = Stage("slow", lambda item: (time.sleep(0.05), done.append(item)), capacity=1)
    t0 = time.perf_counter()
    for i in range(6):  # the producer outruns the stage: every send waits on a full inbox
        assert stage.send(i)
    bounded(stage.finish, 10)
    assert done == list(range(6)) and not stage.alive() and stage.error is None
    assert time.perf_counter() - t0 >= 0.3  # the stage did take its time


def test_stage_failure_is_kept_and_no_send_waits_on_it(short_waits):
    def work(item):
        if item == 2:
            raise ValueError("broken")
        time.sleep(0.02)

    stage = Stage("fragile", work, capacity=1)
    sent = bounded(lambda: [stage.send(i) for i in range(50)], 10)
    assert sent[:3] == [True] * 3 and sent[-1] is False  # once it died, sends return False at once
    assert bounded(stage.finish, 10) is True
    assert isinstance(stage.error, ValueError)
    msg = str(StageFailed("fragile", stage.error))
    assert "the fragile stage failed: ValueError: broken" in msg and "test_hangs.py" in msg


def test_finish_with_a_timeout_gives_up_on_a_stuck_stage(short_waits):
    gate = threading.Event()
    stage = Stage("stuck", lambda item: gate.wait(), capacity=1)
    stage.send(0)
    stage.send(1)  # the inbox is now full: END cannot get in
    t0 = time.perf_counter()
    assert bounded(lambda: stage.finish(timeout=0.2), 10) is False
    assert time.perf_counter() - t0 < 2
    gate.set()
    assert bounded(stage.finish, 10) is True


# ---- render ---------------------------------------------------------------------------------


def test_render_survives_decode_slower_than_every_wait(tmp_path, route, monkeypatch, short_waits):
    """Decode takes 30x the hand-off's wait per chunk and the generator outruns it: the queue is
    full when the stream ends (the end-of-stream marker once got dropped right there)."""
    img, wav = make_inputs(tmp_path, seconds=1.0)
    calls = patch_decode(monkeypatch, seconds=0.15)
    out = tmp_path / "slow.mp4"
    report = bounded(lambda: render(route, img, wav, out, overlap=True))
    # the first chunk decodes one latent frame at a time (time to first frame), the rest whole
    assert report.chunks == 4 and calls[0] == report.chunks - 1 + route.preset.stream.chunk_latents
    assert report.frames == 25 and probe(out).frames == 25


@pytest.mark.parametrize("overlap", [True, False])
def test_render_decode_failure_is_named_and_the_file_keeps_what_was_made(
    tmp_path, route, monkeypatch, short_waits, overlap
):
    img, wav = make_inputs(tmp_path, seconds=1.0)
    patch_decode(monkeypatch, seconds=0.05, fail_at=3)  # chunk 0 decodes in two calls (one per latent frame)
    out = tmp_path / "fail.mp4"
    with pytest.raises(StageFailed, match=r"the decode stage failed: ValueError: decode boom") as err:
        bounded(lambda: render(route, img, wav, out, overlap=overlap))
    assert err.value.stage == "decode" and isinstance(err.value.__cause__, ValueError)
    assert "finalised with the 8 frames" in str(err.value)
    assert probe(out).frames == 8  # chunk 0, playable


def test_render_generation_failure_is_named(tmp_path, route, monkeypatch, short_waits):
    img, wav = make_inputs(tmp_path, seconds=1.0)
    calls = [0]
    real = StreamGenerator.chunk

    def chunk(self, *a, **k):
        calls[0] += 1
        if calls[0] == 3:
            raise RuntimeError("generation boom")
        return real(self, *a, **k)

    monkeypatch.setattr(StreamGenerator, "chunk", chunk)
    out = tmp_path / "gen.mp4"
    with pytest.raises(StageFailed, match="the generation stage failed: RuntimeError: generation boom"):
        bounded(lambda: render(route, img, wav, out, overlap=True))
    assert probe(out).frames == 16  # the two chunks made before it, decoded and finalised


def test_render_with_an_encoder_slow_to_start(tmp_path, route, short_waits):
    """ffmpeg that takes a second before it reads anything: every frame hand-off waits."""
    slow = tmp_path / "slow-ffmpeg"
    slow.write_text(f"#!/bin/sh\nsleep 1\nexec '{find_ffmpeg()}' \"$@\"\n")
    slow.chmod(slow.stat().st_mode | stat.S_IEXEC)
    img, wav = make_inputs(tmp_path, seconds=1.0)
    out = tmp_path / "slowenc.mp4"
    report = bounded(lambda: render(route, img, wav, out, ffmpeg=str(slow)))
    assert report.frames == 25 and probe(out).frames == 25


def test_writer_whose_ffmpeg_dies_raises_and_closes(tmp_path, short_waits):
    w = VideoWriter(tmp_path / "x.mp4", 64, 64, 25, ffmpeg="/bin/true", queue_frames=2)
    frames = np.zeros((200, 64, 64, 3), np.uint8)
    with pytest.raises(FlowactError, match="ffmpeg stopped accepting frames"):
        bounded(lambda: w.write(frames), 20)
    with pytest.raises(FlowactError, match="ffmpeg failed"):
        bounded(w.close, 20)


def test_cli_decode_failure_exits_non_zero_with_one_line(tmp_path, monkeypatch, short_waits):
    img, wav = make_inputs(tmp_path, seconds=1.0)
    patch_decode(monkeypatch, fail_at=4)  # chunk 0 in two calls, chunk 1 in one, chunk 2 fails
    out = tmp_path / "cli.mp4"
    code, _, stderr = bounded(
        lambda: run_cli(
            ["render", "-i", str(img), "-a", str(wav), "--out", str(out), "--preset", TINY, "--random-weights"]
        )
    )
    lines = [x for x in stderr.splitlines() if x.startswith("flowact: error:")]
    assert code == 1 and len(lines) == 1 and "the decode stage failed: ValueError: decode boom" in lines[0], stderr
    assert probe(out).frames == 16


def test_bench_with_slow_decode_finishes(monkeypatch, short_waits):
    """The reported hang: `flowact bench ... --json` with decode slower than the waits."""
    patch_decode(monkeypatch, seconds=0.15)
    code, stdout, stderr = bounded(
        lambda: run_cli(["bench", "--preset", TINY, "--seconds", "1", "--random-weights", "--json"])
    )
    assert code == 0, stderr
    assert '"frames": 25' in stdout


# ---- live ---------------------------------------------------------------------------------


def _live(tmp_path, route, duration):
    img, _ = make_inputs(tmp_path)
    p = route.preset
    reference = load_image(img, p.video.width, p.video.height, "cover")
    out = tmp_path / "live.mp4"
    opts = LiveOptions(out=str(out), duration=duration, planner="none", max_ahead=1.0)
    return out, lambda: run_live(route, reference, opts, events=EventLog())


def test_live_survives_decode_slower_than_real_time(tmp_path, route, monkeypatch, short_waits):
    """Each chunk (0.32 s of video) takes 0.4 s to decode: the stream falls behind, holds
    frames, and still ends on time with a playable file."""
    calls = patch_decode(monkeypatch, seconds=0.4)
    out, run = _live(tmp_path, route, duration=2.0)
    report = bounded(run)
    assert calls[0] >= 3 and report.frames == 50 and report.held_frames > 0
    assert probe(out).frames == 50


def test_live_decode_failure_ends_an_endless_stream(tmp_path, route, monkeypatch, short_waits):
    """No duration, no stop command: only the failure can end the stream, and it must."""
    patch_decode(monkeypatch, seconds=0.02, fail_at=4)  # warm-up 2, chunk 0, then chunk 1 fails
    out, run = _live(tmp_path, route, duration=None)
    with pytest.raises(StageFailed, match="the decode stage failed: ValueError: decode boom") as err:
        bounded(run)
    assert err.value.stage == "decode"
    assert probe(out).frames >= 8  # chunk 0 (and any held frames), finalised


def test_writer_whose_ffmpeg_stalls_is_killed_not_waited_on(tmp_path, monkeypatch, short_waits):
    """An encoder that stays alive but never reads: writing more than its pipe holds, and then
    closing, end with its error instead of waiting for good."""
    from flowact.media import ffmpeg as ff

    monkeypatch.setattr(ff, "STALL_SECONDS", 0.5)
    stuck = tmp_path / "stuck-ffmpeg"
    stuck.write_text("#!/bin/sh\nexec sleep 600\n")
    stuck.chmod(stuck.stat().st_mode | stat.S_IEXEC)
    w = VideoWriter(tmp_path / "x.mp4", 64, 64, 25, ffmpeg=str(stuck), queue_frames=2)
    t0 = time.perf_counter()
    with pytest.raises(FlowactError, match="ffmpeg stopped accepting frames"):
        bounded(lambda: w.write(np.zeros((50, 64, 64, 3), np.uint8)), 30)  # 600 kB: more than a pipe holds
    with pytest.raises(FlowactError, match="ffmpeg failed"):
        bounded(w.close, 30)
    assert time.perf_counter() - t0 < 20
