"""The photo route's golden frames: a refactor must not change what it makes. Six chunks (48 frames)
of the shipped motion engine on the bundled portrait and the human voice (seed 3): the motion
numbers, each frame's mean and spread, and each frame's mean distance from the photo (where the
face moves), against tests/data/photo_golden.json, recorded on 2026-12-06 before the "one house"
refactor (the same on an AVX-512 CPU and under AVX2 emulation). A change meant to alter the frames
re-records it: `python tests/test_golden_photo.py > tests/data/photo_golden.json`."""

import json
from pathlib import Path

import numpy as np

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
    moved = np.abs(f - inputs.reference.astype(np.float64)[None]).mean(axis=(1, 2, 3))
    return {
        "means": np.round(f.mean(axis=(1, 2, 3)), 3).tolist(),
        "stds": np.round(f.std(axis=(1, 2, 3)), 3).tolist(),
        "moved": np.round(moved, 4).tolist(),
        "motion": np.round(np.concatenate(motion), 4).tolist(),
    }


def test_the_photo_route_makes_what_it_made_before_the_refactor():
    want, got = json.loads(GOLDEN.read_text()), photo_stats()
    np.testing.assert_allclose(got["motion"], want["motion"], atol=2e-3)
    np.testing.assert_allclose(got["means"], want["means"], atol=0.05)
    np.testing.assert_allclose(got["stds"], want["stds"], atol=0.05)
    np.testing.assert_allclose(got["moved"], want["moved"], atol=0.02)
    assert max(want["moved"]) > 0.5  # the face moves: a still photo would pass the rest


if __name__ == "__main__":
    print(json.dumps(photo_stats()))
