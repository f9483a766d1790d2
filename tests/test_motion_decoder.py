"""The decoder that draws what the motion says (issue: the video model draws what the motion says, part
3): each video frame's motion read by the decoder's taps, exact when streamed, grown at zero on a
decoder without them, trained with the mouth closed in its input, and driven by the render's motion."""

import dataclasses

import numpy as np
import pytest
import torch

from flowact.config import load_preset
from flowact.errors import FlowactError
from flowact.model import FlowActModel
from flowact.model.vae import DecoderState
from flowact.stream.generator import StreamGenerator
from flowact.world.motion_vector import VIDEO_MOTION_DIM
from helpers import TINY


def drawing(decoder: bool = True):
    """The tiny preset with a video model that reads the motion, and a reference decoder that reads it
    too (or not: `decoder` False)."""
    p = load_preset(TINY)
    return dataclasses.replace(
        p,
        model=dataclasses.replace(p.model, motion_inject=VIDEO_MOTION_DIM),
        vae=dataclasses.replace(p.vae, motion=VIDEO_MOTION_DIM if decoder else 0, ref_decoder=True),
    )


def test_the_motion_changes_the_frames_and_streams_exactly():
    """Random weights: an open mouth draws other frames than a closed one; no motion is the reference's
    pose (zeros); decoding a chunk one latent frame at a time, each with its own frames' motion, equals
    decoding it whole."""
    p = drawing()
    m = FlowActModel(p)
    m.init_random(0)
    m.eval()
    g = torch.Generator().manual_seed(3)
    ref = torch.rand(1, 3, 1, 64, 64, generator=g) * 2 - 1
    z = torch.randn(1, p.vae.latent_channels, 2, 8, 8, generator=g)
    zref = m.vae.encode(ref)
    open_ = torch.zeros(1, 8, VIDEO_MOTION_DIM)
    open_[:, 2:6, 0] = 0.9  # mouth_open in four of the eight frames

    @torch.no_grad()
    def decode(pieces):
        st = DecoderState()
        m.vae.decode(zref, st, reference=ref)
        return torch.cat([m.vae.decode(zp, st, motion=mo) for zp, _, mo in pieces], dim=2)

    whole = decode([(z, None, open_)])
    split = decode(StreamGenerator.split_latents(z, None, open_))
    assert whole.shape == (1, 3, 8, 64, 64)
    assert torch.allclose(whole, split, atol=1e-5)
    rest = decode([(z, None, torch.zeros_like(open_))])
    assert torch.equal(decode([(z, None, None)]), rest)
    diff = (whole - rest).abs().amax(dim=(0, 1, 3, 4))
    assert float(diff[:2].max()) < float(diff[2:6].min())  # the causal decoder: frames before the motion unchanged
    with pytest.raises(ValueError, match="8 frames of 24 motion numbers"):
        decode([(z, None, open_[:, :5])])


def test_taps_grown_on_a_decoder_without_them_draw_as_before(tmp_path):
    from flowact import weights as W
    from flowact.model.vae import Decoder

    plain_p = drawing(decoder=False)
    plain = FlowActModel(plain_p)
    plain.init_random(0)
    init = tmp_path / "plain.safetensors"
    W.save(plain, init, torch.float32)
    p = drawing()
    grown = FlowActModel(p)
    W.load_into(grown, W.resolve(p, weights=init), new_ok=tuple("vae.decoder." + k for k in Decoder.MOTION_BRANCH))
    g = torch.Generator().manual_seed(4)
    ref = torch.rand(1, 3, 1, 64, 64, generator=g) * 2 - 1
    x = torch.cat([ref, torch.rand(1, 3, 8, 64, 64, generator=g) * 2 - 1], dim=2)
    motion = torch.randn(1, 9, VIDEO_MOTION_DIM, generator=g)
    with torch.no_grad():
        a = plain.vae.decode(plain.vae.encode(x), reference=ref)
        b = grown.vae.decode(grown.vae.encode(x), reference=ref, motion=motion)
    assert torch.equal(a, b)


def test_the_decoder_stage_learns_the_motion_from_closed_mouths(tmp_path):
    """The decoder stage with --closed-input on the world: the taps train away from zero, the
    encoder stays frozen, and a decoder that reads motion needs the world's labels."""
    from safetensors.torch import load_file

    from flowact import weights as W
    from flowact.train.loop import TrainRun, train
    from flowact.train.objective import StageSettings

    p = drawing()
    base = FlowActModel(drawing(decoder=False))
    base.init_random(0)
    init = tmp_path / "base.safetensors"
    W.save(base, init, torch.float32)
    run = TrainRun(stage="decoder", preset=p, data="synth", out=tmp_path, steps=2, batch=2, lr=2e-3, warmup=1,
                   seed=0, init=init, save_every=2, speaking=1.0,
                   settings=StageSettings(closed_input=0.5, mouth_weight=20))  # fmt: skip
    out = train(run)
    assert out["steps"] == 2 and np.isfinite(out["loss_last"])
    after = load_file(str(tmp_path / "decoder.safetensors"))
    before = load_file(str(init))
    assert float(after["vae.decoder.taps.2.out.weight"].abs().max()) > 0
    enc = [k for k in before if k.startswith("vae.encoder.")]
    assert enc and all(torch.equal(before[k], after[k].to(before[k].dtype)) for k in enc)


def test_closed_input_needs_the_worlds_closed_frames_and_the_motion():
    from flowact.train.autoencoder import DecoderObjective
    from flowact.train.data import SynthSource
    from flowact.train.stages import Stage, StageSettings

    p = drawing()
    m = FlowActModel(p)
    m.init_random(0)
    clip = SynthSource(3, 64, 64, seconds=2.0).sample(0, 0, 16)  # no mouth masks: no closed frames
    stage = Stage("decoder", m, p, StageSettings(closed_input=0.5))
    assert isinstance(stage, DecoderObjective)
    g = torch.Generator().manual_seed(0)
    with pytest.raises(FlowactError, match="--closed-input"):
        stage.loss([clip], g)
    stage = Stage("decoder", m, p, StageSettings())
    with pytest.raises(FlowactError, match="motion labels"):
        stage.loss([dataclasses.replace(clip, motion=None)], g)


def test_a_decoder_motion_that_is_not_the_video_models_is_a_clear_error(tmp_path):
    import yaml

    spec = yaml.safe_load(open(TINY))
    spec["vae"]["motion"] = VIDEO_MOTION_DIM  # the video model reads none
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(FlowactError, match="vae.motion"):
        load_preset(str(tmp_path / "p.yaml"))


def test_a_render_draws_the_tracks_mouth(tmp_path):
    """Through the CLI (random weights) on a preset whose decoder reads motion: a track that opens the
    mouth gives other frames than one that keeps it closed, from the first frames on."""
    import yaml

    from flowact.media.probe import read_frames
    from flowact.world.motion_vector import REST_ARMS, neutral_vector
    from helpers import make_inputs, run_cli

    spec = yaml.safe_load(open(TINY))
    spec["name"], spec["model"]["motion_inject"], spec["vae"]["motion"] = "tiny-draw", 24, 24
    preset = tmp_path / "tiny-draw.yaml"
    preset.write_text(yaml.safe_dump(spec))
    img, wav = make_inputs(tmp_path, seconds=1.0)
    closed = np.concatenate([np.repeat(neutral_vector()[None], 25, 0), np.repeat(REST_ARMS[None], 25, 0)], 1)
    opened = closed.copy()
    opened[:, 0] = 1.0  # mouth_open
    frames = {}
    for name, track in (("closed", closed), ("open", opened)):
        np.save(tmp_path / f"{name}.npy", track)
        out = tmp_path / f"{name}.mp4"
        args = ["render", "--preset", str(preset), "--random-weights", "-i", str(img), "-a", str(wav), "-o", str(out)]
        code, _, err = run_cli([*args, "--motion", str(tmp_path / f"{name}.npy")])
        assert code == 0, err
        frames[name] = read_frames(out).astype(np.float32)
    assert frames["open"].shape == (25, 64, 64, 3)
    assert np.abs(frames["open"][:4] - frames["closed"][:4]).mean() > 0.5
