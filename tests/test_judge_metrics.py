"""The evaluator's metrics on synthetic signals, and timeline reading."""

import json

import numpy as np
import pytest

from flowact.errors import FlowactError
from flowact.judge import metrics
from flowact.judge.evaluate import load_timeline
from flowact.world.behaviour import STATES


def _speechy(n, seed):
    rng = np.random.default_rng(seed)
    return np.convolve(rng.random(n + 8), np.ones(4) / 4, mode="valid")[:n]


def test_lipsync_finds_sync_and_offsets():
    a = _speechy(200, 0)
    good = metrics.lipsync(a + 0.05 * np.random.default_rng(1).standard_normal(200), a)
    assert good["correlation"] > 0.9 and good["best_offset_s"] == 0
    late = metrics.lipsync(np.concatenate([np.zeros(12), a[:-12]]), a)  # video 12 frames late
    assert late["correlation"] < 0.3 and late["best_offset_s"] == pytest.approx(12 / 25)
    early = metrics.lipsync(np.concatenate([a[5:], np.zeros(5)]), a)
    assert early["best_offset_s"] == pytest.approx(-5 / 25)
    other = metrics.lipsync(_speechy(200, 7), a)
    assert other["correlation"] < 0.3
    assert metrics.lipsync(np.zeros(50), a)["correlation"] == 0.0  # a still mouth does not correlate


def test_identity_mean_and_drift():
    flat = metrics.identity(np.full(100, 0.1))
    assert flat["mean"] == pytest.approx(0.1) and abs(flat["slope_per_s"]) < 1e-6
    drift = metrics.identity(0.1 + 0.02 * np.arange(100) / 25, threshold=0.3)
    assert drift["slope_per_s"] == pytest.approx(0.02, rel=1e-3) and drift["same_character"] is True


def test_flicker_separates_flicker_from_stillness():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (1, 64, 64, 3)).repeat(30, 0).astype(np.uint8)
    still = metrics.flicker(base)
    flick = base.astype(int)
    flick[::2] = np.clip(flick[::2] + 20, 0, 255)
    bad = metrics.flicker(flick.astype(np.uint8))
    assert still["second_diff"] == 0 and bad["second_diff"] > 10


def test_behaviour_accuracy():
    t = np.array([0] * 10 + [4] * 10)
    out = metrics.behaviour(t.copy(), t, STATES)
    assert out["accuracy"] == 1.0
    out = metrics.behaviour(np.zeros(20, int), t, STATES)
    assert out["accuracy"] == 0.5 and out["per_state_recall"]["waving"] == 0.0
    assert metrics.behaviour(t, None, STATES)["accuracy"] is None


def test_timeline_files(tmp_path):
    p = tmp_path / "t.json"
    p.write_text(
        json.dumps(
            {"timeline": [{"start": 0, "end": 1, "state": "speaking"}, {"start": 1, "end": 2, "prompt": "wave hello"}]}
        )
    )
    s = load_timeline(p, 50)
    assert (s[:25] == STATES.index("speaking")).all() and (s[25:] == STATES.index("waving")).all()
    y = tmp_path / "t.yaml"
    y.write_text("- {start: 0, prompt: thinking hard}\n- {start: 0.5, state: nodding}\n")
    s = load_timeline(y, 25)
    assert s[0] == STATES.index("thinking") and s[-1] == STATES.index("nodding")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"start": 0, "state": "dancing"}]))
    with pytest.raises(FlowactError, match="bad.json.*dancing"):
        load_timeline(bad, 10)
    with pytest.raises(FlowactError, match="not found"):
        load_timeline(tmp_path / "missing.json", 10)
    junk = tmp_path / "junk.json"
    junk.write_text("{{{ not: [valid")
    with pytest.raises(FlowactError, match="junk.json"):
        load_timeline(junk, 10)


def test_lipsync_says_so_when_there_is_no_speech():
    rate, frames = 16_000, 100
    silent = np.zeros(frames * 640, np.float32)
    voiced = metrics.speech_frames(silent, frames, rate)
    assert voiced.shape == (frames,) and not voiced.any()
    r = metrics.lipsync(np.random.default_rng(0).random(frames), np.random.default_rng(1).random(frames), voiced=voiced)
    assert r["applicable"] is False and r["correlation"] is None and "no speech" in r["reason"]
    t = np.arange(frames * 640) / rate
    speech = (0.2 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    speech[: frames * 640 // 2] = 0  # 2 s of sound in the second half
    v = metrics.speech_frames(speech, frames, rate)
    assert v[:45].sum() == 0 and v[55:].all()
    a = np.sin(np.arange(frames) / 3)
    assert metrics.lipsync(a, a, voiced=v)["applicable"] is True
