"""The held-out evaluation: streams like inference (with optional steps and guidance), and
scores generated, ground-truth and reconstructed frames on clips never used in training."""

import numpy as np
import torch

from flowact.config import load_preset
from flowact.model import FlowActModel
from flowact.train import evaluate as E
from flowact.world.clip import heldout_character
from flowact.world.speech import HELDOUT_VARIANTS
from helpers import TINY


def _model():
    m = FlowActModel(load_preset(TINY))
    m.init_random(0)
    return m.eval()


def test_heldout_clips_use_heldout_characters_and_voices():
    clips = list(E.heldout_clips(2, 1.0, 64, 64))
    assert all(heldout_character(c.seed) for c in clips) and clips[0].seed != clips[1].seed
    assert all(c.voice.name.split("+")[1] in HELDOUT_VARIANTS for c in clips)


def test_drift_streams_of_different_seeds_use_different_heldout_characters():
    a, b, a2 = E.drift_clip(0, 1.0, 64, 64), E.drift_clip(1, 1.0, 64, 64), E.drift_clip(0, 1.0, 64, 64)
    assert heldout_character(a.seed) and heldout_character(b.seed)
    assert a.seed != b.seed and not np.array_equal(a.reference(), b.reference())
    assert a.seed == a2.seed and np.array_equal(a.reference(), a2.reference())


def test_stream_matches_inference_and_guidance_changes_it():
    from flowact.stream.generator import AudioTrack, StreamGenerator, TextTrack

    m = _model()
    clip = next(E.heldout_clips(1, 1.0, 64, 64))
    frames = E.stream(m, clip.reference(), clip.audio, lambda t: "waving", 20, seed=3)
    assert frames.shape == (20, 64, 64, 3) and frames.dtype == np.uint8
    # the same as driving the generator by hand, chunk by chunk
    gen = StreamGenerator(m, 3)
    at, tt = AudioTrack(m, clip.audio, gen.device), TextTrack(m)
    gen.start(clip.reference())
    with torch.no_grad():
        ref = np.concatenate([gen.decode(gen.chunk(k, at.tokens(2 * k, 2), tt.tokens("waving"))) for k in range(3)])
    assert np.array_equal(frames, ref[:20])
    guided = E.stream(m, clip.reference(), clip.audio, lambda t: "waving", 20, seed=3, steps=4, guidance=2.0)
    assert guided.shape == frames.shape and not np.array_equal(guided, frames)
    # a guidance interval below every step's noise level is no guidance; audio-only guidance keeps the prompt
    unguided = E.stream(m, clip.reference(), clip.audio, lambda t: "waving", 20, seed=3, steps=4)
    none = E.stream(
        m, clip.reference(), clip.audio, lambda t: "waving", 20, seed=3, steps=4, guidance=2.0, guide_below=0
    )
    assert np.array_equal(none, unguided)
    audio_only = E.stream(
        m, clip.reference(), clip.audio, lambda t: "waving", 20, seed=3, steps=4, guidance=2.0, guide_on="audio"
    )
    assert not np.array_equal(audio_only, guided) and not np.array_equal(audio_only, unguided)


def test_evaluate_models_scores_every_row():
    m = _model()
    report = E.evaluate_models({"student": (m, {})}, clips=1, seconds=2.0, log=lambda s: None)
    assert set(report) == {"ground_truth", "vae_reconstruction", "student"}
    for row in report.values():
        assert row["clips"] == 1 and 0 <= row["state_accuracy"] <= 1 and row["identity"] is not None
    assert report["ground_truth"]["lipsync"] > 0.3  # the real thing is in sync


def test_drift_scores_a_window_before_every_mark_even_one_shorter_than_the_window():
    m = _model()
    out = E.drift(m, marks_s=(1.0, 3.0), window_s=2.0, log=lambda s: None)
    assert set(out) == {"1s", "3s"}
    for row in out.values():  # the 1 s mark scores frames 0..25, not an empty slice
        assert row["identity"] is not None and np.isfinite(row["identity"]) and 0 <= row["state_accuracy"] <= 1
