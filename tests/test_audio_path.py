"""The transformer's frame-token audio path (issue: the MMDiT itself lip-syncs): one audio token
per video frame at its own time, a frame's video tokens reading only their frame's audio, the
encoder pre-trained on the world's mouth parameters, training windows cut with audio margins."""

import dataclasses

import numpy as np
import torch

from flowact.config import load_preset
from flowact.model import FlowActModel
from flowact.model.layout import TokenLayout
from flowact.stream.generator import StreamGenerator
from flowact.train.data import SynthSource
from flowact.train.loop import TrainRun, train
from flowact.train.sample import cut_audio
from helpers import TINY

import flowact_kernels.reference as ref_ops


def hearing(depth=None, inject=True):
    p = load_preset(TINY)
    m = dataclasses.replace(p.model, audio_inject=inject, audio_local=True, **({"depth": depth} if depth else {}))
    return dataclasses.replace(p, model=m, audio=dataclasses.replace(p.audio, frame_tokens=True))


def test_audio_tokens_sit_at_their_own_frames_time():
    lay = TokenLayout.of(hearing())
    a = lay.audio(10.0, 2)[:, 0].tolist()
    assert a == [10.0, 10.25, 10.5, 10.75, 11.0, 11.25, 11.5, 11.75]
    plain = TokenLayout.of(load_preset(TINY)).audio(10.0, 2)[:, 0].tolist()
    assert plain == [10.0] * 4 + [11.0] * 4


def test_local_mask_keeps_each_frames_video_on_its_own_audio():
    lay = TokenLayout.of(hearing())
    per, C, A = lay.grid[0] * lay.grid[1], lay.chunk_latents, lay.audio_per_latent
    m = lay.chunk_mask()
    n = C * per + C * A + lay.text_tokens
    assert m.shape == (n, n)
    v0, v1, a0, a1 = 0, per, C * per, C * per + A
    assert m[v0, a0] and not m[v0, a1] and m[v1, a1] and not m[v1, a0]
    assert m[v0, v1] and m[a0, a1] and m[a0, v1] and m[v0, n - 1]  # only video -> other frames' audio is cut
    assert int((~m).sum()) == C * per * (C - 1) * A


def test_bank_attention_chunk_mask_matches_an_explicit_mask():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 6, 8, generator=g) for _ in range(3))
    kb, vb = torch.randn(1, 2, 5, 8, generator=g), torch.randn(1, 2, 5, 8, generator=g)
    valid = torch.tensor([[True, False, True, True, False]])
    cm = torch.rand(6, 6, generator=g) > 0.4
    cm |= torch.eye(6, dtype=torch.bool)
    out = ref_ops.bank_attention(q, k, v, kb, vb, valid, cm)
    full = torch.cat([valid.expand(6, 5), cm], dim=1)
    want = torch.nn.functional.scaled_dot_product_attention(
        q, torch.cat([kb, k], 2), torch.cat([vb, v], 2), attn_mask=full
    )
    assert torch.allclose(out, want, atol=1e-6)
    no_mask = ref_ops.bank_attention(q, k, v, kb, vb, valid)
    assert torch.allclose(ref_ops.bank_attention(q, k, v, kb, vb, valid, torch.ones(6, 6, dtype=torch.bool)), no_mask)
    assert not torch.allclose(out, no_mask, atol=1e-3)


def test_a_frames_video_does_not_hear_the_next_frames_audio():
    """One block and no injection (which puts frame 1's audio into frame 1's video tokens), so no
    path runs through other tokens: frame 0's velocity is blind to frame 1's audio tokens, in the
    streaming pass and in the training pass; frame 1's is not."""
    p = hearing(depth=1, inject=False)
    m = FlowActModel(p)
    m.init_random(0)
    C = p.stream.chunk_latents
    # its own seed: drawn from the global generator, the inputs depended on the tests run before this one
    # (a fresh clone's CI once drew frame 1's change at 9.7e-6, under the bound)
    gen = torch.Generator().manual_seed(3)
    x, refl = torch.randn(1, 4, C, 8, 8, generator=gen), torch.randn(1, 4, 1, 8, 8, generator=gen)
    audio, text = torch.randn(1, C * 4, 32, generator=gen), torch.randn(1, 1, 4, 32, generator=gen)
    other = audio.clone()
    other[:, 4:] = 10 * torch.randn(1, 4, 32, generator=gen)  # frame 1's tokens only
    g = StreamGenerator(m, 0)
    with torch.no_grad():
        m.dit(refl, g.t_zero, None, None, g.bank.view(), g.ref_cos, g.ref_sin, g.bank.reference_write(), "reference")
        g.bank.mark_reference()
        t = torch.tensor([0.7])
        a = m.dit(x, t, audio, text[:, 0], g.bank.view(), g.cos, g.sin)
        b = m.dit(x, t, other, text[:, 0], g.bank.view(), g.cos, g.sin)
        lay = TokenLayout.of(p)
        ta = m.dit.forward_train(refl, x, t[:, None], audio, text, lay)
        tb = m.dit.forward_train(refl, x, t[:, None], other, text, lay)
    for u, w in ((a, b), (ta, tb)):
        d0, d1 = ((u[:, :, f] - w[:, :, f]).abs().max() for f in (0, 1))
        assert d0 < 1e-7 and d1 > 1e-5, (d0, d1)  # a small random model: frame 1 moves by ~2e-5


def test_cut_audio_margins_hear_the_clip_around_the_window():
    a = np.arange(1, 10 * 640 + 1, dtype=np.float32)  # 10 frames at 25 fps, 640 samples each
    x = cut_audio(a, 2, 4, margin=4)
    assert len(x) == 12 * 640
    assert (x[: 2 * 640] == 0).all() and x[2 * 640] == 1.0  # before the clip: silence, then its start
    assert (x[4 * 640 : 8 * 640] == a[2 * 640 : 6 * 640]).all()  # the window itself, 4 frames in
    assert (cut_audio(a, 2, 4) == a[2 * 640 : 6 * 640]).all()  # no margin: exactly the window
    assert (cut_audio(a, 8, 4, margin=4)[10 * 640 :] == 0).all()  # past the clip's end: silence


def test_audio_stage_learns_the_mouth_parameters_on_a_fixed_clip(tmp_path):
    from test_train import FixedSource

    p = hearing()
    fixed = FixedSource()
    fixed.inner = SynthSource(5, 64, 64, seconds=2.0, speaking=1.0, video=False)  # audio and labels, no frames
    out = train(
        TrainRun(
            stage="audio",
            preset=p,
            data="synth",
            out=tmp_path,
            steps=25,
            batch=1,
            lr=3e-3,
            warmup=1,
            seed=0,
            save_every=25,
            bf16=False,
        ),
        source=fixed,
    )
    assert out["loss_last"] < 0.5 * out["loss_first"], out
    # only the audio encoder trained
    m0, m1 = FlowActModel(p), FlowActModel(p)
    from flowact import weights as W

    W.load_into(m1, W.resolve(p, weights=tmp_path / "audio.safetensors"))
    m0.init_random(0)
    assert torch.equal(m0.dit.blocks[0].sets["video"].qkv.weight, m1.dit.blocks[0].sets["video"].qkv.weight)
    assert not torch.equal(m0.audio.ear_in.weight, m1.audio.ear_in.weight)
