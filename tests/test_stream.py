"""The streaming generator and memory bank: causality, determinism, bounded cost."""

import numpy as np
import pytest
import torch

from flowact.config import load_preset
from flowact.model import FlowActModel
from flowact.stream.bank import MemoryBank
from flowact.stream.generator import AudioTrack, StreamGenerator, TextTrack
from helpers import TINY


@pytest.fixture(scope="module")
def model():
    m = FlowActModel(load_preset(TINY))
    m.init_random(0)
    return m.eval()


def _reference(seed=0):
    return (np.random.default_rng(seed).random((64, 64, 3)) * 255).astype(np.uint8)


def _audio(seconds=3.0):
    t = np.arange(int(16_000 * seconds)) / 16_000
    return (0.3 * np.sin(2 * np.pi * 200 * t) * (np.sin(2 * np.pi * 2 * t) > 0)).astype(np.float32)


def _stream(model, chunks, seed=0, reference=None, prompt="speaking"):
    gen = StreamGenerator(model, seed)
    audio, text = AudioTrack(model, _audio(), "cpu"), TextTrack(model)
    gen.start(_reference() if reference is None else reference)
    frames = []
    with torch.no_grad():
        for k in range(chunks):
            frames.append(gen.decode(gen.chunk(k, audio.tokens(2 * k, 2), text.tokens(prompt))))
    return frames, gen


def test_streaming_is_causal_and_seeded(model):
    short, _ = _stream(model, 3)
    long, _ = _stream(model, 6)
    for a, b in zip(short, long[:3]):
        assert np.array_equal(a, b)  # chunk k does not change when later chunks exist
    again, _ = _stream(model, 3)
    assert all(np.array_equal(a, b) for a, b in zip(short, again))
    other_seed, _ = _stream(model, 3, seed=1)
    assert not np.array_equal(short[0], other_seed[0])


def test_a_deferred_memory_pass_gives_the_same_stream(model):
    """The toon route decodes a chunk before its memory pass (`defer_memory`): the pass runs when the
    next chunk starts, the frames and the bank are bit for bit those of the pass run at once; the
    decode may change the latents it was given without reaching the memory."""
    now, gen_now = _stream(model, 3)
    gen = StreamGenerator(model, 0)
    audio, text = AudioTrack(model, _audio(), "cpu"), TextTrack(model)
    gen.start(_reference())
    later = []
    with torch.no_grad():
        for k in range(3):
            z = gen.chunk(k, audio.tokens(2 * k, 2), text.tokens("speaking"), defer_memory=True)
            assert gen.bank.short_term == (None if k == 0 else list(range((k - 1) * gen.C, k * gen.C)))  # not yet
            later.append(gen.decode(z))
            z.mul_(-1.0)  # a caller that reuses the tensor
    assert all(np.array_equal(a, b) for a, b in zip(now, later))
    gen.flush_memory()
    gen.flush_memory()  # nothing left: no second pass
    assert gen.bank.short_term == gen_now.bank.short_term == list(range(2 * gen.C, 3 * gen.C))
    assert torch.equal(gen.bank.k, gen_now.bank.k) and torch.equal(gen.bank.v, gen_now.bank.v)


def test_a_decoder_primed_aside_draws_the_same_frames(model, monkeypatch):
    """`start(prime_aside=True)`: the reference's decode runs in its own thread while chunk 0 is
    generated; the frames are those of the decoder primed at once, and its failure is raised by the
    decode that needed it."""
    now, _ = _stream(model, 2)
    gen = StreamGenerator(model, 0)
    audio, text = AudioTrack(model, _audio(), "cpu"), TextTrack(model)
    gen.start(_reference(), prime_aside=True)
    with torch.no_grad():
        aside = [gen.decode(gen.chunk(k, audio.tokens(2 * k, 2), text.tokens("speaking"))) for k in range(2)]
    assert all(np.array_equal(a, b) for a, b in zip(now, aside))

    decode = model.vae.decode

    def broken(*a, reference=None, **k):  # only the priming (the call given the reference) fails
        if reference is not None:
            raise RuntimeError("priming failed")
        return decode(*a, **k)

    monkeypatch.setattr(model.vae, "decode", broken)
    gen.start(_reference(), prime_aside=True)
    z = gen.chunk(0, audio.tokens(0, 2), text.tokens("speaking"))
    with pytest.raises(RuntimeError, match="priming failed"):
        gen.decode(z)


def test_later_chunks_read_the_memory(model):
    # the causality test would pass trivially if chunks ignored their context: show they don't
    a, _ = _stream(model, 3)
    b, _ = _stream(model, 3, reference=_reference(7))
    assert not np.array_equal(a[2], b[2])
    assert all(f.shape == (8, 64, 64, 3) and f.dtype == np.uint8 for f in a)


def test_bank_is_bounded_flat_cost(model):
    _, g5 = _stream(model, 5)
    _, g50 = _stream(model, 50)
    assert g5.bank.k.shape == g50.bank.k.shape and g5.bank.nbytes() == g50.bank.nbytes()
    assert g50.bank.valid.sum() == g5.bank.valid.sum() == g50.bank.capacity - 2 * 16  # all but the current region
    # long-term keeps sparse past frames, newest next to short-term, oldest evicted
    assert g50.bank.long_term == [96, 97] and g50.bank.short_term == [98, 99]


def test_long_term_stride_policy_and_slot_rotation():
    p = load_preset(TINY)
    import dataclasses

    p = dataclasses.replace(p, stream=dataclasses.replace(p.stream, long_term=3, long_term_stride=2))
    bank = MemoryBank.of(p)
    T, C = bank.T, bank.C
    # fill the current region with recognisable keys and commit chunk after chunk
    history = {}
    for chunk in range(6):
        cur = bank.cur_slot * T
        for f in range(C):
            key = torch.randn(p.model.depth, 1, p.model.heads, T, p.head_dim)
            bank.k[:, :, :, cur + f * T : cur + (f + 1) * T] = key
            history[chunk * C + f] = key
        bank.commit(chunk * C)
        assert not bank.valid[:, cur:].any()  # the current region is never visible
    # frames 0..9 left short-term; stride 2 admitted 0, 2, 4, 6, 8 -> the newest three stay
    assert bank.long_term == [4, 6, 8] and bank.short_term == [10, 11]
    # a frame written at short-term slot s and moved to long-term slot j was rotated by the
    # position delta: the stored key equals the original key rotated by (j_pos - s_pos)
    from flowact.model.rope import rope_tables
    import flowact_kernels as K

    j = 2  # frame 8, newest long-term slot; it left short-term from its slot 0 (8 % C == 0)
    delta = torch.zeros(T, 3)
    delta[:, 0] = float(bank.lt_slot + j) - float(bank.st_slot + 0)
    c, s = rope_tables(delta, p.model.rope_axes, p.model.rope_theta)
    stored = bank.k[:, :, :, (bank.lt_slot + j) * T : (bank.lt_slot + j + 1) * T]
    assert torch.allclose(stored, K.reference.rope(history[8], c, s), atol=1e-5)
    # frame 4 was shifted down two slots after admission: its rotation composes the moves
    delta[:, 0] = float(bank.lt_slot + 0) - float(bank.st_slot + 0)
    c, s = rope_tables(delta, p.model.rope_axes, p.model.rope_theta)
    stored = bank.k[:, :, :, bank.lt_slot * T : (bank.lt_slot + 1) * T]
    assert torch.allclose(stored, K.reference.rope(history[4], c, s), atol=1e-4)


def test_euler_sampler_is_exact_for_a_perfect_velocity_and_counts_nfe():
    from flowact.stream.sampler import EulerSampler, interpolate, velocity_target

    x0, noise = torch.randn(1, 4, 2, 8, 8), torch.randn(1, 4, 2, 8, 8)
    calls = []

    def oracle(x, t):
        calls.append(float(t[0]))
        # the straight path's velocity; check x really lies on the path at time t
        assert torch.allclose(x, interpolate(x0, noise, t), atol=1e-5)
        return velocity_target(x0, noise)

    s = EulerSampler((1.0, 0.857, 0.6, 0.0), 1, "cpu")
    out = s.sample(oracle, noise)
    assert s.nfe == 3 and calls == pytest.approx([1.0, 0.857, 0.6])
    assert torch.allclose(out, x0, atol=1e-5)
