"""`flowact render --motion FILE`: a given per-frame motion track drives the photo route instead of the
motion engine (media/motion.py reads it); bad tracks are refused naming the file and the line."""

import json

import numpy as np
import pytest
from PIL import Image

from flowact.errors import FlowactError
from flowact.media.motion import load_motion
from flowact.media.probe import read_frames
from flowact.world.motion_vector import ARM_KEYS, MOTION_KEYS, REST_ARMS, index, neutral_vector

from helpers import make_inputs, run_cli

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def _track(frames: int, open_mouth: float) -> np.ndarray:
    t = np.repeat(neutral_vector()[None], frames, 0)
    t[:, index("mouth_open")] = open_mouth
    return t


def test_the_three_formats_read_alike(tmp_path):
    a = np.random.default_rng(0).uniform(0, 0.9, (5, 16)).astype(np.float32)
    np.save(tmp_path / "t.npy", a)
    keys = list(reversed(MOTION_KEYS))  # any column order
    rows = [",".join(keys)] + [",".join(str(float(r[MOTION_KEYS.index(k)])) for k in keys) for r in a]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    lines = [json.dumps(dict(zip(MOTION_KEYS, map(float, r)))) for r in a[:3]] + [json.dumps(r.tolist()) for r in a[3:]]
    (tmp_path / "t.jsonl").write_text("\n".join(lines) + "\n\n")
    for name in ("t.npy", "t.csv", "t.jsonl"):
        np.testing.assert_allclose(load_motion(tmp_path / name), a, atol=1e-6, err_msg=name)


def test_a_track_may_carry_the_arms(tmp_path):
    """The 8 arm numbers after the 16 (the toon route's video model reads them): all three formats."""
    a = np.random.default_rng(0).uniform(0, 0.9, (4, 24)).astype(np.float32)
    a[:, 16:] = REST_ARMS - 0.2
    np.save(tmp_path / "t.npy", a)
    keys = list(ARM_KEYS + MOTION_KEYS)
    all_keys = MOTION_KEYS + ARM_KEYS
    rows = [",".join(keys)] + [",".join(str(float(r[all_keys.index(k)])) for k in keys) for r in a]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    lines = [json.dumps(dict(zip(all_keys, map(float, r)))) for r in a[:2]] + [json.dumps(r.tolist()) for r in a[2:]]
    (tmp_path / "t.jsonl").write_text("\n".join(lines) + "\n")
    for name in ("t.npy", "t.csv", "t.jsonl"):
        np.testing.assert_allclose(load_motion(tmp_path / name), a, atol=1e-6, err_msg=name)
    (tmp_path / "some.csv").write_text(",".join(MOTION_KEYS + ARM_KEYS[:2]) + "\n")
    with pytest.raises(FlowactError, match=r"some\.csv: line 1: .*missing: \['left_wrist_x'"):
        load_motion(tmp_path / "some.csv")
    (tmp_path / "mixed.jsonl").write_text(json.dumps([0.0] * 24) + "\n" + json.dumps([0.0] * 16) + "\n")
    with pytest.raises(FlowactError, match=r"mixed\.jsonl: line 2: 16 numbers, a frame has 24, as the first frame"):
        load_motion(tmp_path / "mixed.jsonl")
    far = a.copy()
    far[2, 16 + 3] = 1.5
    np.save(tmp_path / "far.npy", far)
    with pytest.raises(FlowactError, match=r"far\.npy: frame 2: left_wrist_y = 1\.5 is outside -1\.\.1"):
        load_motion(tmp_path / "far.npy")


def test_a_bad_track_is_refused_naming_the_file_and_the_line(tmp_path):
    header = ",".join(MOTION_KEYS)
    cases = {
        "short.jsonl": ("[0.1, 0.2]\n", "short.jsonl: line 1: 2 numbers, a frame has 16"),
        "word.csv": (f"{header}\n{','.join(['0'] * 16)}\n{','.join(['x'] * 16)}\n", "word.csv: line 3: 16 numbers"),
        "far.jsonl": (
            json.dumps([0.0] * 5 + [3.0] + [0.0] * 10) + "\n",
            "far.jsonl: line 1: head_yaw = 3 is outside -1..1",
        ),
        "keys.csv": ("mouth_open\n0.1\n", "keys.csv: line 1: the header must name the 16 motion keys"),
        "t.txt": ("0", "t.txt: a motion track is .npy, .csv, .jsonl"),
        "empty.jsonl": ("\n", "empty.jsonl: the motion track has no frames"),
    }
    for name, (text, said) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(FlowactError, match=said.replace("(", r"\(").replace(".", r"\.")):
            load_motion(tmp_path / name)
    with pytest.raises(FlowactError, match="nope.npy: motion track not found"):
        load_motion(tmp_path / "nope.npy")


def test_a_track_drives_the_photo_and_the_toon_route(tmp_path):
    photo = tmp_path / "face.png"
    Image.open(ROOT / "examples" / "astronaut.jpg").convert("RGB").crop((100, 0, 420, 320)).resize((256, 256)).save(
        photo
    )
    _, wav = make_inputs(tmp_path, seconds=1.0)
    ref = np.asarray(Image.open(photo).convert("RGB"), np.float32)
    frames = {}
    for name, opening in (("rest", None), ("open", 0.8)):
        track = tmp_path / f"{name}.npy"
        np.save(track, _track(20, 0.0) if opening is None else _track(20, opening))
        out = tmp_path / f"{name}.mp4"
        code, stdout, err = run_cli(
            ["render", "-i", str(photo), "-a", str(wav), "-o", str(out), "--motion", str(track), "--json"]
        )
        assert code == 0, err
        report = json.loads(stdout)
        assert report["frames"] == 25 and "motion from the given track (20 frames)" in report["conditions"]
        frames[name] = read_frames(out).astype(np.float32)
    still = np.abs(frames["rest"] - ref[None]).mean()
    moved = np.abs(frames["open"] - frames["rest"]).mean(axis=(0, 3))
    assert still < 4.0, still  # the rest pose leaves the photo as it is (up to H.264)
    assert moved.max() > 40 and moved[:80].mean() < 1.0  # the mouth opens; the eyes and forehead stay
    # the toon-128 video model reads the motion too; a preset whose model does not says so
    toon = ["-i", str(ROOT / "examples" / "character_1.png"), "-a", str(wav), "--motion", str(tmp_path / "open.npy")]
    code, stdout, err = run_cli(["render", *toon, "-o", str(tmp_path / "t.mp4"), "--json"])
    assert code == 0 and "motion from the given track (20 frames)" in json.loads(stdout)["conditions"], err
    code, _, err = run_cli(["render", "--preset", "toon-256", *toon, "-o", str(tmp_path / "t256.mp4")])
    assert code == 2 and "toon-256's draws from the audio alone" in err
