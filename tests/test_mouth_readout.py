"""scripts/mouth_readout.py: the readout tells features that carry the openness from ones that do not."""

import numpy as np

from flowact.config import load_preset
from flowact.model import FlowActModel
from flowact.train.evaluate import heldout_clips
from helpers import TINY, load_script


def _module():
    return load_script("mouth_readout")


def _rows(rng, carried: bool, clips: int = 8, frames: int = 40):
    rows = []
    for _ in range(clips):
        label = rng.uniform(0, 1, frames).astype(np.float32)
        noise = rng.normal(size=(frames, 12))
        offset = rng.normal(size=(1, 12)) * 5  # each clip's own look, which the median removes
        feats = noise + offset
        if carried:
            feats[:, 0] += 20 * label
        rows.append({"truth": feats, "label": label, "speaking": np.ones(frames, bool)})
    return rows


def test_readout_scores_carried_openness_high_and_noise_near_zero():
    mod = _module()
    rng = np.random.default_rng(0)
    c, cs = mod.readout(_rows(rng, carried=True), "truth", 0.1)
    assert c > 0.9 and cs > 0.9
    c, _ = mod.readout(_rows(rng, carried=False), "truth", 0.1)
    assert abs(c) < 0.2


def test_features_of_a_clip_line_up_with_its_frames():
    mod = _module()
    p = load_preset(TINY)
    m = FlowActModel(p)
    m.init_random(0)
    clip = next(heldout_clips(1, 1.0, p.video.width, p.video.height))
    r = mod.features(m.eval(), clip)
    n = len(r["label"])
    assert n % 4 == 0 and r["truth"].shape == r["reconstruction"].shape == (n, 3 * (mod.BOX // mod.POOL) ** 2)
    assert r["latents"].shape == (n // 4, p.vae.latent_channels * 9) and r["speaking"].shape == (n,)
