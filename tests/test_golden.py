"""A refactor must not change what the stream makes: per-frame statistics of a 5-chunk stream of
the tiny preset (seeded random weights, fp32) against the values recorded on 2026-12-01, before
the token-layout, training-objective and formatting refactors (they matched after each one, and
the same on an AVX2-only and an AVX-512 CPU). A change that is meant to alter the frames (a new
model layout, a new sampler) re-records them: run this file's `stream_stats()` and paste."""

import numpy as np
import torch

from flowact.config import load_preset
from flowact.model import FlowActModel
from flowact.stream.generator import AudioTrack, StreamGenerator, TextTrack

from helpers import TINY

MEANS = [
    107.489,
    110.887,
    100.467,
    102.752,
    108.866,
    111.515,
    99.528,
    101.777,
    105.027,
    105.632,
    98.558,
    102.998,
    109.27,
    110.444,
    98.037,
    101.768,
    113.085,
    111.267,
    102.205,
    107.691,
    105.209,
    109.938,
    100.223,
    102.206,
    107.203,
    108.463,
    101.648,
    104.003,
    107.588,
    108.206,
    102.963,
    109.5,
    102.664,
    108.263,
    104.118,
    107.672,
    109.078,
    113.204,
    103.656,
    104.607,
]
STDS = [
    64.818,
    64.912,
    63.067,
    63.805,
    64.917,
    66.148,
    63.487,
    62.219,
    64.588,
    64.132,
    66.019,
    64.648,
    65.531,
    65.101,
    63.95,
    66.693,
    64.851,
    67.927,
    65.937,
    64.023,
    62.731,
    66.983,
    65.116,
    67.081,
    63.883,
    64.471,
    64.843,
    64.384,
    64.598,
    65.924,
    65.509,
    64.641,
    64.075,
    64.785,
    65.485,
    67.708,
    66.672,
    65.792,
    65.836,
    65.301,
]


def tiny_stream(chunks: int = 5) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The tiny preset's stream (seeded random weights, fp32): each chunk's latents and frames."""
    torch.manual_seed(0)
    p = load_preset(TINY)
    m = FlowActModel(p)
    m.init_random(0)
    m.eval()
    gen = StreamGenerator(m, 3)
    ref = (np.random.default_rng(0).random((p.video.height, p.video.width, 3)) * 255).astype(np.uint8)
    latents, frames = [], []
    with torch.no_grad():
        audio = AudioTrack(m, np.random.default_rng(1).standard_normal(16000 * 3).astype(np.float32) * 0.1, "cpu")
        text = TextTrack(m).tokens("speaking")
        gen.start(ref)
        C = p.stream.chunk_latents
        for k in range(chunks):
            a, mel = audio.chunk(k * C, C)
            z = gen.chunk(k, a, text)
            latents.append(z.numpy())
            frames.append(gen.decode(z, mel))
    return latents, frames


def stream_stats() -> tuple[list[float], list[float]]:
    f = np.concatenate(tiny_stream()[1]).astype(np.float64)
    return f.mean(axis=(1, 2, 3)).tolist(), f.std(axis=(1, 2, 3)).tolist()


def test_the_stream_makes_what_it_made_before_the_refactors():
    means, stds = stream_stats()
    assert len(means) == len(MEANS)
    np.testing.assert_allclose(means, MEANS, atol=0.05)
    np.testing.assert_allclose(stds, STDS, atol=0.05)
