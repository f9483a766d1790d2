"""The photo route's golden frames: a refactor must not change what it makes. Six chunks (48 frames)
of the shipped motion engine on the bundled portrait and the human voice (seed 3): the motion
numbers, each frame's mean and spread, each frame's mean distance from the photo (where the face
moves), and the same three around the mouth (the box of the lips, where a whole-frame figure hides
a change), against tests/data/photo_golden.json. Recorded on 2026-12-06 before the "one house"
refactor; re-recorded on purpose the same day for the new inside of the mouth (issue 32: teeth,
tongue, lips carried by the jaw); again on 2026-12-07 for the one motion engine of both routes that makes the
arms too (issue 33: a new engine, its 16 numbers trained by the same recipe); again the same day for the body's
filter (the engine's sway, breathing and shrug had shaken the frames: each frame's distance from the photo now
changes smoothly). A change meant to alter the frames
re-records it:
`python tests/test_golden_photo.py > tests/data/photo_golden.json`."""

import json
from pathlib import Path

import numpy as np

from flowact.photo.face import LIPS_OUTER

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "data" / "photo_golden.json"


def photo_stats() -> dict:
    from flowact.routes import load_inputs, load_route

    route = load_route("photo-512")
    ex = ROOT / "examples"
    inputs = load_inputs(route.preset, ex / "astronaut.jpg", ex / "human_speech.wav")
    stream = route.stream(route.prepare(inputs.reference, inputs.face), 3, inputs.audio.samples[: 16000 * 2])
    frames, motion = [], []
    for k in range(6):
        chunk = stream.generate(k, 8, "speaking")
        motion.append(chunk.output)
        frames.extend(stream.draw(chunk))
    f = np.concatenate(frames).astype(np.float64)
    ref = inputs.reference.astype(np.float64)
    moved = np.abs(f - ref[None]).mean(axis=(1, 2, 3))
    lips = inputs.face.points[list(LIPS_OUTER), :2] * (f.shape[2] / ref.shape[1])
    iod = inputs.face.inter_ocular
    x0, y0 = (lips.min(0) - 0.3 * iod).astype(int)
    x1, y1 = (lips.max(0) + 0.3 * iod).astype(int)
    m = f[:, y0:y1, x0:x1]
    return {
        "mouth_means": np.round(m.mean(axis=(1, 2, 3)), 3).tolist(),
        "mouth_stds": np.round(m.std(axis=(1, 2, 3)), 3).tolist(),
        "mouth_moved": np.round(np.abs(m - ref[None, y0:y1, x0:x1]).mean(axis=(1, 2, 3)), 3).tolist(),
        "means": np.round(f.mean(axis=(1, 2, 3)), 3).tolist(),
        "stds": np.round(f.std(axis=(1, 2, 3)), 3).tolist(),
        "moved": np.round(moved, 4).tolist(),
        "motion": np.round(np.concatenate(motion), 4).tolist(),
    }


def test_the_photo_route_makes_what_it_made():
    want, got = json.loads(GOLDEN.read_text()), photo_stats()
    np.testing.assert_allclose(got["motion"], want["motion"], atol=2e-3)
    np.testing.assert_allclose(got["means"], want["means"], atol=0.05)
    np.testing.assert_allclose(got["stds"], want["stds"], atol=0.05)
    np.testing.assert_allclose(got["moved"], want["moved"], atol=0.02)
    np.testing.assert_allclose(got["mouth_means"], want["mouth_means"], atol=0.3)
    np.testing.assert_allclose(got["mouth_stds"], want["mouth_stds"], atol=0.3)
    np.testing.assert_allclose(got["mouth_moved"], want["mouth_moved"], atol=0.3)
    assert max(want["mouth_moved"]) > 10  # the mouth opens
    assert max(want["moved"]) > 0.5  # the face moves: a still photo would pass the rest


if __name__ == "__main__":
    print(json.dumps(photo_stats()))
