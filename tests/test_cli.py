"""`flowact render` end to end with real ffmpeg: valid files, stdout, bad input, interrupts."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from flowact.media.probe import probe, read_frames
from helpers import TINY, make_inputs, run_cli

PY = [sys.executable, "-c", "from flowact.cli import main; main()"]


def test_render_writes_valid_mp4_with_audio(tmp_path):
    img, wav = make_inputs(tmp_path, seconds=1.3, rate=22050, stereo=True)
    out = tmp_path / "out.mp4"
    code, stdout, stderr = run_cli(
        ["render", "--image", str(img), "--audio", str(wav), "--out", str(out), "--preset", TINY, "--json"]
    )
    assert code == 0, stderr
    report = json.loads(stdout)
    info = probe(out)
    assert (info.video_codec, info.pix_fmt, info.width, info.height, info.fps) == ("h264", "yuv420p", 64, 64, 25.0)
    assert info.frames == report["frames"] == round(1.3 * 25)
    assert info.audio_codec == "aac"
    assert abs(info.audio_duration - 1.3) <= 0.04  # within one frame (48 kHz AAC: 21 ms frames)
    assert abs(info.frames / 25 - 1.3) <= 0.04
    for key in (
        "ttff_seconds",
        "e2e_fps",
        "generator_fps",
        "realtime_factor",
        "stages",
        "chunk_latency_ms",
        "conditions",
    ):
        assert key in report
    assert "RANDOM" in report["weights"] and "RANDOM WEIGHTS" in stderr  # said loudly
    frames = read_frames(out)
    assert frames.shape == (info.frames, 64, 64, 3) and frames.std() > 1.0


def test_render_to_stdout_is_a_playable_stream(tmp_path):
    img, wav = make_inputs(tmp_path, seconds=1.0)
    proc = subprocess.run(
        PY + ["render", "-i", str(img), "-a", str(wav), "--out", "-", "--preset", TINY, "--json"],
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    stream = tmp_path / "piped.mp4"
    stream.write_bytes(proc.stdout)
    assert probe(stream).frames == 25
    assert read_frames(stream).shape == (25, 64, 64, 3)
    assert '"frames": 25' in proc.stderr.decode()  # the JSON summary went to stderr, not into the video


def _one_line_error(code, stderr, *needles):
    assert code == 2, stderr
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("flowact: error:"), stderr
    assert "Traceback" not in stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_bad_inputs_give_one_clear_line(tmp_path):
    img, wav = make_inputs(tmp_path)
    out = str(tmp_path / "o.mp4")
    base = ["render", "--preset", TINY, "--out", out]
    bad_img = tmp_path / "broken.png"
    bad_img.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    bad_wav = tmp_path / "broken.wav"
    bad_wav.write_bytes(os.urandom(2000))
    empty = tmp_path / "empty.wav"
    sf.write(str(empty), np.zeros(0), 16000)
    silent = tmp_path / "quiet.flac"
    sf.write(str(silent), np.zeros(16000), 16000)
    cases = [
        (["--image", str(tmp_path / "nope.png"), "--audio", str(wav)], ["nope.png", "image file not found"]),
        (["--image", str(bad_img), "--audio", str(wav)], ["broken.png", "image"]),
        (["--image", str(img), "--audio", str(tmp_path / "nope.wav")], ["nope.wav", "audio file not found"]),
        (["--image", str(img), "--audio", str(bad_wav)], ["broken.wav", "cannot decode audio"]),
        (["--image", str(img), "--audio", str(empty)], ["empty.wav", "empty"]),
        (["--image", str(img), "--audio", str(silent)], ["quiet.flac", "silent"]),
    ]
    for args, needles in cases:
        _one_line_error(*run_cli(base + args)[::2], *needles)
    ok = ["--image", str(img), "--audio", str(wav)]
    code, _, stderr = run_cli(["render", "--preset", "toon-999", "--out", out] + ok)
    _one_line_error(code, stderr, "unknown preset 'toon-999'")
    code, _, stderr = run_cli(["render", "--preset", TINY, "--out", str(tmp_path / "no" / "dir" / "o.mp4")] + ok)
    _one_line_error(code, stderr, "output folder does not exist")
    code, _, stderr = run_cli(["render", "--preset", TINY, "--out", str(tmp_path)] + ok)
    _one_line_error(code, stderr, "output path is a directory")
    code, _, stderr = run_cli(base + ok + ["--ffmpeg", "/nonexistent/ffmpeg"])
    _one_line_error(code, stderr, "/nonexistent/ffmpeg", "ffmpeg not found")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_render_leaves_a_playable_file(tmp_path, sig):
    img, wav = make_inputs(tmp_path, seconds=120.0, rate=16000)
    out = tmp_path / "partial.mp4"
    proc = subprocess.Popen(
        PY + ["render", "-i", str(img), "-a", str(wav), "-o", str(out), "--preset", TINY],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 60
    while time.time() < deadline and (not out.exists() or out.stat().st_size < 20_000):
        time.sleep(0.05)  # the file grows while the render runs
    assert out.exists() and out.stat().st_size >= 20_000, "render never started writing"
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr.decode()
    assert "Traceback" not in stderr.decode()
    info = probe(out)
    assert 0 < info.frames < 120 * 25
    frames = read_frames(out)
    assert len(frames) == info.frames
    assert info.audio_duration is not None and abs(info.audio_duration - info.frames / 25) < 0.2


def test_presets_json_lists_sizes_params_flops():
    code, stdout, _ = run_cli(["presets", "--json"])
    assert code == 0
    rows = {r["name"]: r for r in json.loads(stdout)["presets"]}
    assert rows["toon-128"]["default"] and rows["toon-128"]["resolution"] == "128x128"
    assert rows["r1-480p"]["params_total"] > 1e9 and rows["r1-480p"]["flops_per_chunk"] > 1e13
    assert rows["r1-480p"]["steps"] == 3


def test_help_teaches_with_examples():
    code, stdout, _ = run_cli(["render", "--help"])
    assert code == 0 and "Examples" in stdout and "--out -" in stdout and "cover" in stdout


def test_overlapped_and_inline_decode_give_the_same_video(tmp_path):
    from flowact.render import render
    from flowact.routes import load_route

    img, wav = make_inputs(tmp_path, seconds=1.0)
    route = load_route(TINY, seed=1)
    a = render(route, img, wav, tmp_path / "a.mp4", seed=1, overlap=True)
    b = render(route, img, wav, tmp_path / "b.mp4", seed=1, overlap=False)
    assert a.frames == b.frames == 25
    assert np.array_equal(read_frames(tmp_path / "a.mp4"), read_frames(tmp_path / "b.mp4"))
