"""The photo route end to end through the CLI: render (routed by the picture), a photo with no
face, a mixed batch, a live session and bench, all on the shipped motion weights."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from flowact.media.audio import load_audio, write_wav
from flowact.media.probe import probe, read_frames
from helpers import run_cli

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PHOTO = EXAMPLES / "astronaut.jpg"


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> Path:
    """1.6 s of the human recording, voiced."""
    x = load_audio(EXAMPLES / "human_speech.wav").samples[int(0.4 * 16000) : int(2.0 * 16000)]
    path = tmp_path_factory.mktemp("speech") / "talk.wav"
    write_wav(path, x, 16000)
    return path


@pytest.fixture(scope="module")
def small_photo(tmp_path_factory) -> Path:
    """The portrait at 320x256 (framing changed, a non-square output; 256: the smallest side the photo
    route keeps without scaling up)."""
    path = tmp_path_factory.mktemp("photo") / "face.jpg"
    im = Image.open(PHOTO).crop((40, 0, 480, 352)).resize((320, 256), Image.Resampling.LANCZOS)
    im.save(path, quality=90)
    return path


def test_render_routes_a_photo_and_its_mouth_moves(tmp_path, speech, small_photo):
    out = tmp_path / "talk.mp4"
    code, stdout, err = run_cli(["render", "-i", str(small_photo), "-a", str(speech), "-o", str(out), "--json"])
    assert code == 0, err
    assert "route: photo-512" in err
    report = json.loads(stdout)
    assert report["preset"] == "photo-512" and "photo route" in report["conditions"] and report["frames"] == 40
    info = probe(out)
    assert (info.width, info.height, info.frames) == (320, 256, 40)  # the photo's framing, kept
    frames = read_frames(out)
    ref = np.asarray(Image.open(small_photo).convert("RGB"), np.float32)
    mouth = frames[:, 100:160, 130:210].astype(np.float32)  # the mouth region of this framing
    rest = frames[:, 20:60, 20:80].astype(np.float32)  # background
    assert mouth.std(0).mean() > 4 * rest.std(0).mean()  # the mouth moves, the background stays
    assert np.abs(frames.astype(np.float32).mean(0) - ref).mean() < 12  # still the same photo


def test_a_photo_without_a_face_is_one_line_exit_2(tmp_path, speech):
    import skimage.data

    coffee = tmp_path / "coffee.png"
    Image.fromarray(skimage.data.coffee()).save(coffee)
    code, _, err = run_cli(["render", "-i", str(coffee), "-a", str(speech), "-o", str(tmp_path / "x.mp4")])
    assert code == 2
    assert f"{coffee}: no face found (the photo route needs a face" in err
    assert len(err.strip().splitlines()) == 2  # the route line + the error
    assert not (tmp_path / "x.mp4").exists()


def test_batch_routes_each_line(tmp_path, speech, small_photo):
    manifest = tmp_path / "jobs.jsonl"
    jobs = [
        {"image": str(small_photo), "audio": str(speech), "out": "photo.mp4"},
        {"image": str(EXAMPLES / "character_1.png"), "audio": str(speech), "out": "toon.mp4"},
    ]
    manifest.write_text("".join(json.dumps(j) + "\n" for j in jobs))
    code, stdout, err = run_cli(["render", "--manifest", str(manifest), "--out-dir", str(tmp_path), "--json",
                                 "--seconds", "0.6"])  # fmt: skip
    assert code == 0, err
    lines = [json.loads(x) for x in stdout.splitlines()]
    assert [r["status"] for r in lines] == ["ok", "ok"]
    assert (probe(tmp_path / "photo.mp4").width, probe(tmp_path / "toon.mp4").width) == (320, 128)


def test_live_session_on_a_photo(tmp_path, small_photo):
    script = tmp_path / "s.jsonl"
    lines = [
        {"at": 0.0, "cmd": "speak", "audio": str(EXAMPLES / "human_speech.wav")},
        {"at": 0.8, "cmd": "state", "state": "nodding"},
    ]
    script.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = tmp_path / "live.mp4"
    code, stdout, err = run_cli(["live", "-i", str(small_photo), "--script", str(script), "--out", str(out),
                                 "--duration", "2", "--json"])  # fmt: skip
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["frames"] == 50 and summary["preset"] == "photo-512"
    info = probe(out)
    assert (info.width, info.height) == (320, 256)


def test_bench_photo_preset(tmp_path):
    code, stdout, err = run_cli(["bench", "--preset", "photo-512", "--seconds", "1", "--json"])
    assert code == 0, err
    r = json.loads(stdout)
    assert r["preset"] == "photo-512" and r["frames"] == 25 and r["ttff_seconds"] > 0
    assert "photo route" in r["conditions"] and set(r["stages"]) >= {"reference", "motion", "warp", "encode"}


def test_an_interrupted_photo_render_leaves_a_playable_file(tmp_path, small_photo):
    import threading

    from flowact.render import render
    from flowact.routes import load_route

    route = load_route("photo-512")
    stop = threading.Event()
    out = tmp_path / "cut.mp4"

    def on_chunk(ev):
        if ev.index == 1:
            stop.set()

    # 4 s (13 chunks); the bounded queue keeps generation at most a few chunks ahead of the warp
    report = render(route, small_photo, EXAMPLES / "human_speech.wav", out, on_chunk=on_chunk, stop=stop)
    assert report.interrupted and 16 <= report.frames < 100
    info = probe(out)
    assert info.frames == report.frames and (info.width, info.height) == (320, 256)


def test_live_chunks_hear_what_the_whole_track_gives_render(small_photo):
    """A live photo stream fed chunk by chunk (its own audio history, the look-ahead that has
    arrived) makes the frames the render path makes from the whole track (same seed)."""
    from flowact.routes import load_route
    from flowact.stream.motion import generate

    route = load_route("photo-512")
    reference, face = route.load_picture(route.preset, small_photo)
    rig = route.prepare(reference, face)
    track = load_audio(EXAMPLES / "human_speech.wav").samples[: 16000 * 2]
    live = route.stream(rig, seed=5)
    n, got = live.chunk_samples, []
    for k in range(len(track) // n):
        got.append(live.frames(k, "", "speaking", track[k * n : (k + 1) * n], track[(k + 1) * n :]))
    got = np.concatenate(got)
    want = rig.render(generate(route.engine, track, None, seed=5, states_per_chunk=["speaking"])[: len(got)])
    assert np.array_equal(got, want)
