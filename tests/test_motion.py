"""The motion engine (model/motion.py, stream/motion.py): streaming through the bank equals the
training layout's recomputation, the bank stays bounded, the shipped weights load and move in range."""

import json

import numpy as np
import pytest
import torch

from flowact.errors import FlowactError
from flowact.model.motion import MotionConfig, MotionDiT, MotionLayout, frame_windows, mel_frames
from flowact.stream.motion import HIGH, LOW, MotionEngine, MotionStream, bundled_path, generate, padded, save_motion


def random_model(seed: int = 0) -> MotionDiT:
    torch.manual_seed(seed)
    m = MotionDiT()
    with torch.no_grad():  # the zero-initialised output layers would hide every difference
        for p in m.parameters():
            p += 0.05 * torch.randn_like(p)
    return m.eval()


def test_streaming_equals_recomputing_each_window_through_the_training_layout():
    m = random_model()
    engine = MotionEngine(m)
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal(16_000 * 4) * 0.1).astype(np.float32)
    ref = rng.uniform(0, 0.5, 16).astype(np.float32)
    chunks = 9  # long-term memory fills from chunk 3 on (stride 12, 8 frames a chunk)
    stream = MotionStream(engine, ref, seed=3)
    streamed = []
    denoise = stream.denoise

    def catch(*a):
        x = denoise(*a)
        streamed.append(x[0])
        return x

    stream.denoise = catch
    for i in range(chunks):
        stream.chunk(i, padded(audio, stream.audio_span(i)), prompt="nodding yes", state="nodding")

    g = torch.Generator().manual_seed(3)
    c, gen = m.cfg.chunk_frames, []
    beh = m.behaviour(torch.tensor([m.state_id("nodding")]), m.word_ids("nodding yes")[None])
    with torch.no_grad():
        # the ear hears the whole stream at once (its speaker mean runs over the chunks in order)
        spans = [torch.from_numpy(padded(audio, stream.audio_span(i))) for i in range(chunks)]
        wins = torch.cat([frame_windows(mel_frames(m.mel, a), c, m.cfg.window) for a in spans])
        every = m.audio_features(wins[None])[0][0].view(chunks, c, -1)
        for i in range(chunks):
            slots, firsts, keep = m.layout.window(i)
            feats, xs = [], []
            for j in slots:
                feats.append(every[j if j >= 0 else i])
                xs.append(gen[j] if 0 <= j < i else torch.zeros(c, 16))
            feat = torch.stack(feats)[None]
            x = torch.randn((1, c, 16), generator=g)
            x[..., :5] *= engine.mouth_noise  # the stream starts the mouth from scaled noise
            ts = engine.timesteps
            for s in range(3):
                t = torch.zeros(1, len(slots))
                t[0, -1] = ts[s]
                xt = torch.stack(xs[:-1] + [x[0]])[None]
                v = m.forward_train(
                    torch.from_numpy(ref)[None],
                    xt,
                    t,
                    feat,
                    beh.expand(len(slots), -1)[None],
                    torch.tensor(firsts)[None],
                    torch.tensor(keep)[None],
                )
                x = x + (ts[s + 1] - ts[s]) * v[:, -1]
            # these mouth numbers are the ear's reading (the features' last five)
            e = list(m.cfg.ear_mouth)
            x[..., e] = (every[i][:, -5:][:, e] - torch.from_numpy(ref[e])) / m.scale[e]
            gen.append(x[0])
    diff = (torch.stack(streamed) - torch.stack(gen)).abs().max().item()
    assert diff < 1e-4, diff
    assert torch.stack(gen).abs().mean() > 0.1  # a real signal, not zeros


def test_bank_is_bounded_and_follows_the_layout_policy():
    m = random_model(1)
    stream = MotionStream(MotionEngine(m), None, seed=0)
    lay = m.layout
    size = stream.bank.nbytes()
    audio = np.zeros(stream.audio_span(0)[1] - stream.audio_span(0)[0], np.float32)
    for i in range(40):
        stream.chunk(i, audio)
        lt, st = lay.memory_frames(i + 1)
        assert stream.bank.long_term == lt and stream.bank.short_term == st
        assert stream.bank.nbytes() == size
    assert stream.bank.valid[:, : stream.bank.view().attend].all()  # every readable slot, once the bank is full
    assert lay.memory_frames(100)[0] == [744, 756, 768, 780]  # the newest kept frames, a stride apart


def test_layout_window_places_kept_frames_on_their_slots():
    lay = MotionLayout.of(MotionConfig())
    chunks, firsts, keep = lay.window(8)
    lt, st = lay.memory_frames(8)
    for j, f in enumerate(lt):
        assert chunks[j] == f // lay.chunk and firsts[j] + keep[j].index(True) == 1 + j
    assert chunks[-2:] == [7, 8] and firsts[-1] == lay.chunk_time and not any(keep[-1])


def test_audio_span_and_chunk_order_are_checked():
    stream = MotionStream(MotionEngine(random_model()), None)
    a, b = stream.audio_span(0)
    assert a < 0 and stream.audio_span(1)[0] - a == 8 * 640
    with pytest.raises(FlowactError, match="audio samples"):
        stream.chunk(0, np.zeros(b - a - 1, np.float32))
    with pytest.raises(FlowactError, match="in order"):
        stream.chunk(1, np.zeros(b - a, np.float32))
    with pytest.raises(FlowactError, match="unknown state"):
        stream.chunk(0, np.zeros(b - a, np.float32), state="dancing")


def test_shipped_weights_load_and_move_in_range_with_three_steps():
    path = bundled_path()
    assert path.stat().st_size <= 1_600_000
    engine = MotionEngine.load()
    assert len(engine.timesteps) - 1 == 3
    t = np.arange(16_000 * 3) / 16_000
    speech = (0.3 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)
    calls = []
    run = engine.model.run
    engine.model.run = lambda *a, **k: calls.append(len(a) < 4 and "final" not in k) or run(*a, **k)
    motion = generate(engine, speech, None, ["talking to the camera"], seed=1)
    del engine.model.run
    assert motion.shape == (75, 24) and np.isfinite(motion).all()  # the 16 and the arms (one engine, both routes)
    assert (motion[:, :16] >= LOW).all() and (motion[:, :16] <= HIGH).all() and np.abs(motion[:, 16:]).max() <= 1
    assert motion[:, 0].std() > 0.02  # the mouth moves with the voice
    chunks = 10
    assert calls.count(False) == 3 * chunks  # 3 denoising passes a chunk (+ conditions and memory)


def test_a_changed_config_round_trips_through_the_weights_file(tmp_path):
    cfg = MotionConfig(ear_width=32, ear_dilations=(1, 2), context_ms=80, lookahead_ms=120, ear_mouth=(2,))
    torch.manual_seed(0)
    m = MotionDiT(cfg)
    path = save_motion(m, tmp_path / "m.safetensors", dtype=torch.float32)
    engine = MotionEngine.load(path)
    assert engine.cfg == cfg and engine.model.ear.outputs == cfg.window - cfg.ear_field + 1
    audio = (np.random.default_rng(0).standard_normal(16_000) * 0.1).astype(np.float32)
    a = generate(MotionEngine(m.eval()), audio, None, seed=0)
    b = generate(engine, audio, None, seed=0)
    np.testing.assert_allclose(a, b, atol=1e-5)
    old = json.loads(cfg.to_json())
    del old["ear_dilations"]  # weights from before the speaker-normalised ear
    with pytest.raises(ValueError, match="retrain"):
        MotionConfig.from_json(json.dumps(old))
    with pytest.raises(ValueError, match="receptive field"):
        MotionDiT(MotionConfig(context_ms=40, lookahead_ms=40))


def test_the_ear_hears_the_speaker_mean_causally_and_it_moves_its_reading():
    m = random_model(2)
    rng = np.random.default_rng(1)
    wins = torch.from_numpy(rng.uniform(-1, 0.5, (1, 24, m.cfg.window, m.cfg.mel_bins)).astype(np.float32))
    f, _, stats = m.audio_features(wins, with_stats=True)
    head, _, mid = m.audio_features(wins[:, :8], with_stats=True)
    tail, _ = m.audio_features(wins[:, 8:], mid)
    torch.testing.assert_close(torch.cat([head, tail], 1), f)  # chunk by chunk equals all at once
    louder = wins.clone()
    louder[:, 8:16] += 0.5  # a different voice heard in chunk 1 changes what chunk 2 hears, not chunk 0
    g, _ = m.audio_features(louder)
    assert torch.equal(g[:, :8], f[:, :8]) and not torch.allclose(g[:, 16:], f[:, 16:])
