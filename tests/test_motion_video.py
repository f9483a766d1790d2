"""The toon route's video model told the motion (issue: the video model draws what the motion says):
the world's per-frame motion with the arms, each latent frame's video tokens given their own frames'
motion through a map per patch position, training and streaming alike."""

import dataclasses

import numpy as np
import pytest
import torch

from flowact.config import load_preset
from flowact.model import FlowActModel
from flowact.model.layout import TokenLayout
from flowact.stream.generator import AudioTrack, StreamGenerator, TextTrack, from_pixels
from flowact.train.data import SynthSource
from flowact.world.motion_vector import ARM_KEYS, VIDEO_MOTION_DIM, arm_vector, video_motion
from helpers import TINY


def moving(dim: int = VIDEO_MOTION_DIM):
    p = load_preset(TINY)
    return dataclasses.replace(p, model=dataclasses.replace(p.model, motion_inject=dim))


def test_the_worlds_motion_holds_the_arms_relative_to_the_rest_pose():
    from flowact.world.behaviour import neutral_motion
    from flowact.world.clip import make_clip

    clip = make_clip(2, 6.0, 64, 64, split="train")  # pointing, speaking, thinking
    m = video_motion(clip)
    assert m.shape == (clip.frames, VIDEO_MOTION_DIM) and VIDEO_MOTION_DIM == 16 + len(ARM_KEYS)
    rest = arm_vector(neutral_motion(clip.character).joints, clip.character)
    assert np.allclose(rest[0, [1, 3, 5, 7]] > 0.3, True)  # at rest elbows and wrists hang below the shoulders
    arms = m[:, 16:]
    assert arms.std(0).max() > 0.1  # a gesture moves an arm away from the rest pose ...
    assert np.abs(arms).min(0).max() < 0.05  # ... and each arm number comes back to it somewhere


def test_the_motion_reaches_the_frames_and_none_is_the_rest_pose():
    """A model that reads the motion (random weights): another arm pose gives other latents; no
    motion equals the rest pose (zeros); a zero output map (grown on older weights) ignores the motion."""
    p = moving()
    m = FlowActModel(p)
    m.init_random(0)
    m.eval()
    F = p.frames_per_chunk
    g = torch.Generator().manual_seed(1)
    ref = (torch.rand(p.video.height, p.video.width, 3, generator=g) * 255).to(torch.uint8).numpy()
    audio = np.zeros(16_000, np.float32)

    def chunk(motion):
        gen = StreamGenerator(m, 5)
        gen.start(ref)
        a, tx = AudioTrack(m, audio, gen.device).tokens(0, p.stream.chunk_latents), TextTrack(m).tokens("")
        return gen.chunk(0, a, tx, motion)

    rest = torch.zeros(1, F, VIDEO_MOTION_DIM)
    raised = rest.clone()
    raised[:, :, 16 + 3] = -0.8  # the left wrist lifted
    assert torch.equal(chunk(None), chunk(rest))
    assert float((chunk(raised) - chunk(rest)).abs().max()) > 1e-3
    with torch.no_grad():
        m.dit.motion_out.weight.zero_()
    assert torch.equal(chunk(raised), chunk(rest))


def test_training_sees_the_motion_as_the_stream_does():
    """The one training pass (pretrain) over one chunk and the streaming pass give the same velocity
    with the motion; it differs from the velocity without it."""
    p = moving()
    m = FlowActModel(p)
    m.init_random(0)
    m.eval()
    C, per = p.stream.chunk_latents, p.frames_per_chunk
    clip = SynthSource(3, 64, 64, seconds=2.0).sample(0, 0, per)
    assert clip.motion.shape == (per, VIDEO_MOTION_DIM)
    motion = torch.from_numpy(clip.motion)[None]
    gen = StreamGenerator(m, 7)
    atrack, ttrack = AudioTrack(m, clip.stream_audio(), gen.device), TextTrack(m)
    gen.start(clip.reference)
    a, tx = atrack.tokens(0, C), ttrack.tokens(clip.prompts[0])
    with torch.no_grad():
        v = m.dit(gen.noise(0), torch.ones(1), a, tx, gen.bank.view(), gen.cos, gen.sin, motion=motion)
        ref = m.vae.encode(from_pixels(clip.reference, "cpu", torch.float32))
        vt = m.dit.forward_train(ref, gen.noise(0), torch.ones(1, 1), a, tx[:, None], TokenLayout.of(p), motion)
        still = m.dit.forward_train(ref, gen.noise(0), torch.ones(1, 1), a, tx[:, None], TokenLayout.of(p))
    assert float((v - vt).abs().max()) < 1e-5
    assert float((v - still).abs().max()) > 1e-3


def test_the_motion_map_grows_at_zero_and_learns(tmp_path):
    """A transformer stage started from weights without the motion map: it starts at zero (the old
    model's output) and trains away from it; the stage reads the samples' motion."""
    from safetensors.torch import load_file

    from flowact import weights as W
    from flowact.train.loop import TrainRun, train

    plain = FlowActModel(load_preset(TINY))
    plain.init_random(0)
    init = tmp_path / "plain.safetensors"
    W.save(plain, init, torch.float32)
    p = moving()
    run = TrainRun(stage="pretrain", preset=p, data="synth", out=tmp_path, steps=3, batch=1, lr=2e-3, warmup=1,
                   seed=0, init=init, save_every=3)  # fmt: skip
    out = train(run)
    assert out["steps"] == 3 and np.isfinite(out["loss_last"])
    grown = load_file(str(tmp_path / "pretrain.safetensors"))
    assert float(grown["dit.motion_out.weight"].abs().max()) > 0
    m = FlowActModel(p)
    W.load_into(m, W.resolve(p, weights=init), new_ok=("dit.motion_",))
    assert float(m.dit.motion_out.weight.detach().abs().max()) == 0


def test_a_sample_without_the_motion_is_a_clear_error():
    from flowact.errors import FlowactError
    from flowact.train.stages import Stage, StageSettings

    p = moving()
    m = FlowActModel(p)
    m.init_random(0)
    clip = SynthSource(3, 64, 64, seconds=2.0).sample(0, 0, 8)
    stage = Stage("memory", m, p, StageSettings())
    with pytest.raises(FlowactError, match="--labels"):
        stage.motion([dataclasses.replace(clip, motion=None)])


def test_the_rest_arms_are_every_characters_rest_pose():
    from flowact.world.behaviour import neutral_motion
    from flowact.world.clip import make_clip
    from flowact.world.motion_vector import REST_ARMS

    for seed in range(12):
        c = make_clip(seed, 0.5, 64, 64, split="train").character
        assert np.abs(arm_vector(neutral_motion(c).joints, c)[0] - REST_ARMS).max() < 0.05, seed


def test_body_changes_tell_a_moving_flat_shape_from_a_ghost():
    """A flat square moving over a flat background changes pixels fully; the same motion drawn as a
    ghost (each frame half the square before and half the one after) changes them by part."""
    from flowact.judge.metrics import body_changes

    frames = np.full((6, 64, 64, 3), 40, np.uint8)
    for i in range(6):
        frames[i, 40:56, 4 + 4 * i : 20 + 4 * i] = (200, 120, 60)
    ghost = ((frames[:-1].astype(np.float32) + frames[1:]) / 2).astype(np.uint8)
    ghost[1::2] = np.clip(ghost[1::2].astype(np.int16) + 20, 0, 255).astype(np.uint8)  # and it flickers
    flat, blurred = body_changes(frames), body_changes(ghost)
    assert flat["half_change"] == 0.0 and flat["flat"] > 0.8
    assert blurred["half_change"] > 0.3 and blurred["flat"] < flat["flat"]


def test_a_toon_preset_that_reads_motion_renders_from_the_engine_or_a_track(tmp_path):
    """Through the CLI (random weights): the motion engine drives the video model; a given track with
    the arms raised gives other frames; both report where the motion came from."""
    import json

    import yaml

    from flowact.media.probe import read_frames
    from flowact.world.motion_vector import REST_ARMS, neutral_vector
    from helpers import make_inputs, run_cli

    spec = yaml.safe_load(open(TINY))
    spec["name"], spec["model"]["motion_inject"] = "tiny-motion", VIDEO_MOTION_DIM
    preset = tmp_path / "tiny-motion.yaml"
    preset.write_text(yaml.safe_dump(spec))
    img, wav = make_inputs(tmp_path, seconds=1.0)
    track = np.concatenate([np.repeat(neutral_vector()[None], 25, 0), np.repeat(REST_ARMS[None], 25, 0)], 1)
    track[:, 16 + 3] = REST_ARMS[3] - 1.2  # the left wrist raised
    np.save(tmp_path / "raised.npy", track)
    frames, said = {}, {}
    for name, extra in (("engine", []), ("raised", ["--motion", str(tmp_path / "raised.npy")])):
        out = tmp_path / f"{name}.mp4"
        args = ["render", "--preset", str(preset), "--random-weights", "-i", str(img), "-a", str(wav), "-o", str(out)]
        code, stdout, err = run_cli([*args, "--json", *extra])
        assert code == 0, err
        said[name] = json.loads(stdout)["conditions"]
        frames[name] = read_frames(out).astype(np.float32)
    assert "motion engine NFE 3" in said["engine"] and "motion from the given track (25 frames)" in said["raised"]
    assert frames["engine"].shape == frames["raised"].shape == (25, 64, 64, 3)
    assert np.abs(frames["engine"] - frames["raised"]).mean() > 1.0


def test_a_live_session_on_a_toon_preset_that_reads_motion(tmp_path):
    """Live, the motion engine hears each chunk with its look-ahead (longer than the video model's ear):
    the session runs its whole length on the tiny preset that reads motion."""
    import yaml

    from flowact.live import EventLog, LiveOptions, LiveSession
    from flowact.routes import load_route, route_of
    from helpers import make_inputs

    spec = yaml.safe_load(open(TINY))
    spec["name"], spec["model"]["motion_inject"] = "tiny-motion", VIDEO_MOTION_DIM
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(spec))
    p = load_preset(str(tmp_path / "p.yaml"))
    img, _ = make_inputs(tmp_path)
    reference, face = route_of(p).load_picture(p, img)
    route = load_route(p, random_weights=True, threads=1)
    stream = route.stream(route.prepare(reference), 0)
    assert stream.lookahead_samples == max(stream.audio.lookahead_samples, stream.motion.lookahead_samples)
    events = []
    session = LiveSession(route, reference, LiveOptions(duration=2.0, planner="none", out=tmp_path / "live.mp4"),
                          EventLog(on_event=events.append))  # fmt: skip
    report = session.run()
    assert report.frames == 50 and not [e for e in events if e["event"] == "error"]


def test_an_engine_that_makes_arms_streams_24_numbers_and_the_photo_keeps_16():
    """MotionConfig(arms=8): the engine makes the 16 and the arms (in -1..1); a 16-number rest pose is
    given the resting arms; the photo route's stream takes the 16."""
    from flowact.model.motion import MotionConfig, MotionDiT
    from flowact.stream.motion import MotionEngine, MotionSource, MotionStream
    from flowact.world.motion_vector import REST_ARMS, neutral_vector

    torch.manual_seed(0)
    engine = MotionEngine(MotionDiT(MotionConfig(arms=8)).eval().requires_grad_(False))
    stream = MotionStream(engine, neutral_vector(), seed=1)
    assert torch.allclose(stream.reference[0, 16:], torch.from_numpy(REST_ARMS))
    a, b = stream.audio_span(0)
    m = stream.chunk(0, np.zeros(b - a, np.float32))
    assert m.shape == (8, 24) and np.abs(m[:, 16:]).max() <= 1.0
    source = MotionSource(engine, 0, np.zeros(16_000, np.float32))
    assert source.chunk(0).shape == (8, 24)


def test_the_motion_cache_holds_the_arms(tmp_path):
    from flowact.train.motion_data import ClipCache, build_cache

    cache = ClipCache(build_cache(tmp_path / "c.npz", 2, seconds=2.0))
    assert cache.motion.shape[-1] == 24 and cache.reference.shape[-1] == 24
    mean, scale = cache.statistics(24)
    assert mean.shape == scale.shape == (24,) and (scale >= 0.05).all()
    assert np.allclose(cache.statistics(16)[0], mean[:16])
