"""Training: the training pass equals inference where they must agree; every stage learns on
a fixed clip; resuming continues exactly; the real-video loader reads mp4 + audio."""

import json

import numpy as np
import pytest
import torch

from flowact.config import load_preset
from flowact.model import FlowActModel
from flowact.model.layout import TokenLayout
from flowact.stream.generator import StreamGenerator
from flowact.train.data import FolderSource, Sample, SynthSource
from flowact.train.loop import TrainRun, train
from flowact.train.sample import AUDIO_MARGIN
from helpers import TINY


class FixedSource:
    """One clip, always: a stage that learns must drive its loss down on it."""

    def __init__(self, seed=3, mouth=False, speaking=0.0):
        self.inner = SynthSource(seed, 64, 64, seconds=2.0, mouth=mouth, speaking=speaking)
        self.cache = {}

    def sample(self, step, index, frames):
        if frames not in self.cache:
            self.cache[frames] = self.inner.sample(0, 0, frames)
        return self.cache[frames]


@pytest.mark.parametrize("inject,hear", [(False, False), (True, False), (True, True)])
def test_training_pass_equals_the_streaming_pass_on_a_first_chunk(inject, hear):
    import dataclasses

    p = load_preset(TINY)
    p = dataclasses.replace(p, model=dataclasses.replace(p.model, audio_inject=inject, audio_local=hear))
    p = dataclasses.replace(p, audio=dataclasses.replace(p.audio, frame_tokens=hear))
    m = FlowActModel(p)
    m.init_random(0)
    C = p.stream.chunk_latents
    ref, x = torch.randn(1, 4, 1, 8, 8), torch.randn(1, 4, C, 8, 8)
    audio, text, t = torch.randn(1, C * 4, 32), torch.randn(1, 1, 4, 32), torch.tensor([[0.7]])
    with torch.no_grad():
        v_train = m.dit.forward_train(ref, x, t, audio, text, TokenLayout.of(p))
        g = StreamGenerator(m, 0)
        m.dit(
            ref,
            g.t_zero,
            None,
            None,
            g.bank.view(),
            g.ref_cos,
            g.ref_sin,
            write=g.bank.reference_write(),
            video_stream="reference",
        )
        g.bank.mark_reference()
        v_stream = m.dit(x, torch.tensor([0.7]), audio, text[:, 0], g.bank.view(), g.cos, g.sin)
    assert torch.allclose(v_train, v_stream, atol=1e-5)
    if inject:  # the injection is live in both passes: other audio, another velocity
        with torch.no_grad():
            v_other = m.dit.forward_train(ref, x, t, audio.flip(1), text, TokenLayout.of(p))
        assert (v_other - v_train).abs().max() > 1e-3


def _run(tmp_path, stage, steps, lr, init=None, preset=None, source=None, **kw):
    run = TrainRun(
        stage=stage,
        preset=preset or load_preset(TINY),
        data="synth",
        out=tmp_path,
        steps=steps,
        batch=1,
        lr=lr,
        warmup=1,
        seed=0,
        init=init,
        save_every=kw.pop("save_every", steps),
        bf16=False,
        **kw,
    )
    return train(run, source=source or FixedSource())


@pytest.fixture(scope="module")
def vae_weights(tmp_path_factory):
    out = tmp_path_factory.mktemp("vae")
    summary = _run(out, "vae", 25, 3e-3)
    return out, summary


def test_vae_stage_learns(vae_weights):
    _, s = vae_weights
    assert s["loss_last"] < 0.75 * s["loss_first"], s


def test_posterior_noise_zero_decodes_the_encoders_mean():
    """--posterior-noise 0: the vae stage's loss no longer depends on the noise draw (the decoder
    reads the mean); at 1 it does."""
    from flowact.train.stages import Stage, StageSettings

    p = load_preset(TINY)
    m = FlowActModel(p)
    m.init_random(0)
    src = FixedSource(seed=4)
    batch = [src.sample(0, 0, 16)]
    with torch.no_grad():
        for noise, same in ((0.0, True), (1.0, False)):
            stage = Stage("vae", m, p, StageSettings(posterior_noise=noise))
            a, _ = stage.loss(batch, torch.Generator().manual_seed(0))
            b, _ = stage.loss(batch, torch.Generator().manual_seed(1))
            assert (float(a) == float(b)) == same, noise


@pytest.mark.parametrize("stage,steps,lr", [("pretrain", 25, 2e-3), ("selfforce", 10, 2e-3)])
def test_stage_learns_on_a_fixed_clip(tmp_path, vae_weights, stage, steps, lr):
    init = vae_weights[0] / "vae.safetensors"
    s = _run(tmp_path, stage, steps, lr, init=init)
    assert s["loss_last"] < 0.9 * s["loss_first"], s
    assert (tmp_path / f"{stage}.safetensors").is_file()


def test_distill_student_moves_toward_the_teacher(tmp_path, vae_weights):
    from flowact import weights as W

    teacher = vae_weights[0] / "vae.safetensors"
    # a student that starts away from its teacher (another random transformer, same VAE)
    m = FlowActModel(load_preset(TINY))
    W.load_into(m, W.resolve(load_preset(TINY), weights=teacher))
    m.dit.init_random(torch.Generator().manual_seed(11), std=0.03)
    student = W.save(m, tmp_path / "student.safetensors")
    s = _run(tmp_path, "distill", 10, 2e-3, init=student, teacher=teacher)
    assert s["loss_last"] < 0.8 * s["loss_first"], s


def test_distill_guidance_interval_and_audio_only_guidance():
    """--guide-below 0 leaves every teacher step unguided (the loss of --guidance 1, exactly);
    guidance everywhere changes it; --guide-on audio keeps the prompt in the unguided pass, so
    it changes the teacher only where the clip has a prompt."""
    from flowact.train.stages import Stage, StageSettings

    p = load_preset(TINY)
    m, other = FlowActModel(p), FlowActModel(p)
    m.init_random(0)
    other.init_random(1)
    other.dit.init_random(torch.Generator().manual_seed(1), std=0.2)  # conditions that move its velocity
    src = FixedSource(seed=5)
    teacher = Stage("distill", other, p).teacher  # a teacher the student does not copy yet

    def loss(**kw):
        st = Stage("distill", m, p, StageSettings(teacher_steps=4, **kw), teacher)
        batch = [src.sample(0, 0, st.frames_needed(np.random.default_rng(1)))]
        assert any(batch[0].prompts)  # the clip has a prompt for the audio-only guidance to keep
        with torch.no_grad():
            return float(st.loss(batch, torch.Generator().manual_seed(0))[0])

    plain = loss(guidance=1.0)
    assert loss(guidance=2.0, guide_below=0.0) == plain
    everywhere, audio_only = loss(guidance=2.0), loss(guidance=2.0, guide_on="audio")
    assert abs(everywhere - plain) > 1e-7 and abs(audio_only - plain) > 1e-7 and abs(audio_only - everywhere) > 1e-7
    assert abs(loss(guidance=2.0, guide_below=0.7) - everywhere) > 1e-7  # the first teacher steps unguided


def test_distill_self_context_shows_both_the_students_own_rollout():
    """--self-context: the student fills its bank by rolling the context chunks out itself (the inference
    path) and the teacher is shown exactly those latents, not the clip's; the loss then differs."""
    from flowact.train.stages import Stage, StageSettings

    p = load_preset(TINY)
    m, other = FlowActModel(p), FlowActModel(p)
    m.init_random(0)
    other.init_random(1)
    src = FixedSource(seed=5)
    teacher = Stage("distill", other, p).teacher
    rng_seed = next(k for k in range(50) if Stage("distill", m, p).chunks(np.random.default_rng(k)) >= 2)

    def loss(self_context):
        st = Stage("distill", m, p, StageSettings(teacher_steps=2, guidance=1.0, self_context=self_context), teacher)
        calls, plain = [], st.rollout_bank

        def spy(model, sample, context, gt, seed, made=None):
            out = plain(model, sample, context, gt, seed, made)
            calls.append((model is st.model, context, gt, made))
            return out

        st.rollout_bank = spy
        batch = [src.sample(0, 0, st.frames_needed(np.random.default_rng(rng_seed)))]
        with torch.no_grad():
            return float(st.loss(batch, torch.Generator().manual_seed(0))[0]), calls

    forced, ((s_own, ctx, s_gt, _), (t_own, t_ctx, t_gt, _)) = loss(False)
    assert s_own and not t_own and ctx == t_ctx >= 1 and s_gt is t_gt  # both shown the clip's latents
    C = load_preset(TINY).stream.chunk_latents
    own, ((s_own, _, s_gt, made), (t_own, _, shown, _)) = loss(True)
    assert s_own and not t_own and s_gt is None and len(made) == ctx  # the student rolled every context chunk out
    assert torch.equal(shown, torch.cat(made, dim=2))  # and the teacher was shown what it made
    assert not torch.allclose(shown, t_gt[:, :, : ctx * C]) and abs(own - forced) > 1e-7


def test_resume_gives_the_same_next_losses(tmp_path, vae_weights):
    init = vae_weights[0] / "vae.safetensors"
    _run(tmp_path / "straight", "pretrain", 4, 1e-3, init=init, save_every=4)
    _run(tmp_path / "stopped", "pretrain", 2, 1e-3, init=init, save_every=2)
    resumed = _run(tmp_path / "stopped", "pretrain", 4, 1e-3, init=init, resume=True, save_every=4)
    assert resumed["resumed_from"] == 2
    straight = [
        json.loads(line) for line in (tmp_path / "straight" / "pretrain" / "log.jsonl").read_text().splitlines()
    ]
    after = [json.loads(line) for line in (tmp_path / "stopped" / "pretrain" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in after] == [1, 2, 3, 4]
    assert [r["loss"] for r in after[2:]] == [r["loss"] for r in straight[2:]]


def test_real_video_folder_loader(tmp_path):
    from flowact.media.audio import write_wav
    from flowact.media.ffmpeg import VideoWriter

    rng = np.random.default_rng(0)
    for i in range(2):
        wav = tmp_path / f"a{i}.wav"
        write_wav(wav, 0.2 * np.sin(np.arange(16000 * 2) / 16000 * 2 * np.pi * 220), 16000)
        with VideoWriter(tmp_path / f"real_{i}.mp4", 96, 80, 25, audio=wav) as w:
            w.write((rng.random((50, 80, 96, 3)) * 255).astype(np.uint8))
        wav.unlink()
    src = FolderSource(tmp_path, 64, 64, seed=1)
    s = src.sample(5, 0, 16)
    assert isinstance(s, Sample) and s.frames.shape == (16, 64, 64, 3) and s.reference.shape == (64, 64, 3)
    assert s.audio_margin == AUDIO_MARGIN and s.audio.shape == ((16 + 2 * AUDIO_MARGIN) * 640,)
    assert np.abs(s.stream_audio()).max() > 0.05
    assert s.prompts == [""] * 16
    # a pretrain step runs on it
    out = _run(tmp_path / "run", "pretrain", 1, 1e-3)
    assert out["steps"] == 1


def test_decoder_stage_keeps_the_encoder_and_learns(tmp_path, vae_weights):
    from safetensors.torch import load_file

    init = vae_weights[0] / "vae.safetensors"
    s = _run(tmp_path, "decoder", 15, 3e-3, init=init)
    assert s["loss_last"] < s["loss_first"], s
    before, after = load_file(str(init)), load_file(str(tmp_path / "decoder.safetensors"))
    enc = [k for k in before if k.startswith("vae.encoder.")]
    dec = [k for k in before if k.startswith("vae.decoder.")]
    assert enc and all(torch.equal(before[k], after[k]) for k in enc)  # the latent space did not move
    assert any(not torch.equal(before[k], after[k]) for k in dec)


def test_decoder_stage_grows_a_reference_branch_on_a_plain_vae(tmp_path, vae_weights):
    """A plain VAE's weights start a reference-conditioned decoder: the new branch begins at
    zero injection, trains with the rest of the decoder, and the encoder stays put."""
    import dataclasses

    from safetensors.torch import load_file

    from flowact import weights as W
    from flowact.errors import FlowactError

    plain = load_preset(TINY)
    p = dataclasses.replace(plain, vae=dataclasses.replace(plain.vae, ref_decoder=True))
    init = vae_weights[0] / "vae.safetensors"
    with pytest.raises(FlowactError, match="missing"):  # outside training a missing branch is an error
        W.load_into(FlowActModel(p), W.resolve(p, weights=init))
    s = _run(tmp_path, "decoder", 15, 3e-3, init=init, preset=p)
    assert s["loss_last"] < s["loss_first"], s
    before, after = load_file(str(init)), load_file(str(tmp_path / "decoder.safetensors"))
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("vae.encoder."))
    grown = [k for k in after if k.startswith("vae.decoder.ref.inject.")]
    assert grown and any(after[k].abs().max() > 0 for k in grown)  # started at zero, trained
    m = FlowActModel(p)
    W.load_into(m, W.resolve(p, weights=tmp_path / "decoder.safetensors"))  # the result loads strictly


def test_only_trains_the_named_branch(tmp_path, vae_weights):
    """--only PREFIX: a grown branch trains on a frozen decoder; a prefix naming no parameter
    of the stage is an error, not a run that trains nothing."""
    import dataclasses

    from safetensors.torch import load_file

    from flowact.errors import FlowactError

    plain = load_preset(TINY)
    p = dataclasses.replace(plain, vae=dataclasses.replace(plain.vae, ref_decoder=True))
    init = vae_weights[0] / "vae.safetensors"
    _run(tmp_path, "decoder", 3, 3e-3, init=init, preset=p, only=("vae.decoder.ref.", "vae.decoder.alpha_out."))
    before, after = load_file(str(init)), load_file(str(tmp_path / "decoder.safetensors"))
    assert all(torch.equal(before[k], after[k]) for k in before)  # everything the init had stayed put
    assert any(after[k].abs().max() > 0 for k in after if k.startswith("vae.decoder.ref.inject."))  # the branch trained
    with pytest.raises(FlowactError, match="no parameter of the decoder stage"):
        _run(tmp_path / "bad", "decoder", 1, 3e-3, init=init, preset=p, only=("dit.",))


def test_ship_weights_combines_a_plain_model_with_a_grown_decoder(tmp_path, vae_weights):
    """scripts/ship_weights.py: the transformer and encoder from --weights (a plain-decoder file),
    the decoder, reference branch included, from --decoder; the result loads strictly."""
    import subprocess
    import sys
    from pathlib import Path

    from safetensors.torch import load_file

    from flowact import weights as W

    text = Path(TINY).read_text()
    assert "channels: [32, 16, 16]}" in text
    ref_yaml = tmp_path / "tiny-ref.yaml"
    ref_yaml.write_text(text.replace("channels: [32, 16, 16]}", "channels: [32, 16, 16], ref_decoder: true}"))
    p = load_preset(str(ref_yaml))
    plain = vae_weights[0] / "vae.safetensors"
    _run(tmp_path / "dec", "decoder", 2, 3e-3, init=plain, preset=p)
    dec = tmp_path / "dec" / "decoder.safetensors"
    out = tmp_path / "shipped.safetensors"
    root = Path(__file__).resolve().parent.parent
    r = subprocess.run(
        [
            sys.executable,
            str(root / "scripts" / "ship_weights.py"),
            "--weights",
            str(plain),
            "--decoder",
            str(dec),
            "--preset",
            str(ref_yaml),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    shipped, d, w = load_file(str(out)), load_file(str(dec)), load_file(str(plain))
    assert any(k.startswith("vae.decoder.ref.") for k in shipped)
    for k, v in shipped.items():
        src = d if k.startswith("vae.decoder.") else w
        assert v.dtype == torch.bfloat16 or not v.is_floating_point()
        assert torch.equal(v, src[k].to(v.dtype)), k
    W.load_into(FlowActModel(p), W.resolve(p, weights=out))
    # without --decoder, a plain file does not fit the reference preset: a clear error, not a silent zero branch
    r = subprocess.run(
        [
            sys.executable,
            str(root / "scripts" / "ship_weights.py"),
            "--weights",
            str(plain),
            "--preset",
            str(ref_yaml),
            "--out",
            str(tmp_path / "bad.safetensors"),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0 and "missing" in r.stderr


def test_mouth_masks_mark_only_the_moving_mouth_and_weight_the_decoder_loss(tmp_path, vae_weights):
    from flowact.errors import FlowactError
    from flowact.train.objective import mouth_weights, to_video
    from flowact.train.stages import StageSettings

    s = SynthSource(11, 128, 128, mouth=True).sample(0, 0, 16)
    m = s.mouth
    assert m.shape == (16, 128, 128) and m.sum() > 0
    ys, xs = np.nonzero(m.max(axis=0))
    assert ys.max() - ys.min() < 20 and xs.max() - xs.min() < 24  # one small region: the mouth
    changed = np.abs(s.frames.astype(int) - s.reference.astype(int)).max(axis=-1) > 12
    assert changed.sum() > 3 * m.sum()  # the motion mask also covers arms and head; this one does not
    w = mouth_weights([s], to_video([s], "cpu"))
    assert w.shape == (1, 1, 17, 128, 128) and float(w[:, :, 0].sum()) == 0 and float(w.sum()) > m.sum()
    with pytest.raises(FlowactError, match="synthetic world"):
        mouth_weights([SynthSource(11, 64, 64).sample(0, 0, 8)], torch.zeros(1, 3, 9, 64, 64))
    out = _run(
        tmp_path,
        "decoder",
        4,
        3e-3,
        init=vae_weights[0] / "vae.safetensors",
        source=FixedSource(mouth=True),
        settings=StageSettings(mouth_weight=10.0),
    )
    assert out["steps"] == 4 and np.isfinite(out["loss_last"])


def test_audio_injection_grows_at_zero_on_weights_without_it(tmp_path, vae_weights):
    """A transformer stage may start from weights that predate model.audio_inject: the new
    projection starts at zero (the old model's output, exactly) and learns; a render-time load
    of such a file into an injecting preset stays an error."""
    import dataclasses

    from flowact import weights as W
    from flowact.errors import FlowactError

    p = load_preset(TINY)
    pi = dataclasses.replace(p, model=dataclasses.replace(p.model, audio_inject=True))
    init = vae_weights[0] / "vae.safetensors"
    out = _run(tmp_path, "pretrain", 3, 2e-3, init=init, preset=pi)
    assert out["steps"] == 3
    from safetensors.torch import load_file

    grown = load_file(str(tmp_path / "pretrain.safetensors"))
    assert float(grown["dit.audio_inject.1.weight"].abs().max()) > 0  # it trained away from zero
    m = FlowActModel(pi)
    W.load_into(m, W.resolve(pi, weights=init), new_ok=("dit.audio_inject.",))
    assert float(m.dit.audio_inject[1].weight.abs().max()) == 0
    with pytest.raises(FlowactError, match="missing"):
        W.load_into(FlowActModel(pi), W.resolve(pi, weights=init))


def test_latent_mouth_maps_masks_onto_the_latent_grid():
    from flowact.errors import FlowactError
    from flowact.train.objective import latent_mouth

    mouth = np.zeros((8, 64, 64), np.float32)  # 8 frames = 2 latent frames of 4
    mouth[5, 40:42, 20:22] = 1  # frame 5 (latent frame 1), pixel (40, 20): latent cell (5, 2) of 8x8
    s = Sample(
        np.zeros((64, 64, 3), np.uint8),
        np.zeros((8, 64, 64, 3), np.uint8),
        np.zeros(100, np.float32),
        [""] * 8,
        mouth=mouth,
    )
    m = latent_mouth([s], torch.zeros(1, 4, 2, 8, 8))
    assert m.shape == (1, 1, 2, 8, 8)
    assert float(m[0, 0, 0].sum()) == 0  # latent frame 0 (frames 0-3) shows no open mouth
    assert float(m[0, 0, 1, 5, 2]) == 1 and float(m[0, 0, 1].sum()) == 9  # the cell, dilated by one cell
    assert float(m[0, 0, 1, 3, 2]) == 0 and float(m[0, 0, 1, 5, 0]) == 0
    with pytest.raises(FlowactError, match="synthetic world"):
        latent_mouth([Sample(s.reference, s.frames, s.audio, s.prompts)], torch.zeros(1, 4, 2, 8, 8))


@pytest.mark.parametrize("stage", ["pretrain", "selfforce", "distill"])
def test_mouth_weight_on_the_transformer_stages(tmp_path, vae_weights, stage):
    """--mouth-weight on a transformer stage weighs the open mouth's latent cells: pretrain
    logs the mouth's own error; every stage trains on it with a finite loss, and the weighted
    loss differs from the plain one on the same batch."""
    from flowact.train.stages import Stage, StageSettings

    src = FixedSource(seed=5, mouth=True)
    p = load_preset(TINY)
    m = FlowActModel(p)
    m.init_random(0)
    stage = Stage(stage, m, p, StageSettings(mouth_weight=20.0))
    frames = stage.frames_needed(np.random.default_rng(1))
    batch = [src.sample(0, 0, frames)]
    assert batch[0].mouth.sum() > 0
    with torch.no_grad():
        loss_w, logs = stage.loss(batch, torch.Generator().manual_seed(0))
        plain = Stage(stage.name, m, p, StageSettings(), stage.teacher)
        loss_p, _ = plain.loss(batch, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss_w) and abs(float(loss_w) - float(loss_p)) > 1e-6
    if stage.name == "pretrain":
        assert np.isfinite(logs["mse_mouth"]) and logs["mse_mouth"] > 0
    init = vae_weights[0] / "vae.safetensors"
    out = _run(tmp_path, stage.name, 2, 1e-3, init=init, source=src, settings=StageSettings(mouth_weight=20.0))
    assert out["steps"] == 2 and np.isfinite(out["loss_last"])


def test_speaking_windows_hold_speech_and_are_synth_only(tmp_path):
    """--speaking 1: every sample is a window of speech (most windows anywhere in a clip are
    not: the mouth rests); a folder of clips has no such windows to pick."""
    from flowact.errors import FlowactError
    from flowact.train.data import make_source

    def rms(src):
        return [float(np.sqrt(np.mean(src.sample(0, i, 16).audio ** 2))) for i in range(6)]

    speech = rms(SynthSource(17, 64, 64, speaking=1.0))
    anywhere = rms(SynthSource(17, 64, 64))
    assert min(speech) > 0.03  # espeak speech; the world's noise floor is ~3e-4
    assert sum(r > 0.03 for r in anywhere) < len(anywhere)
    with pytest.raises(FlowactError, match="--data synth"):
        make_source(str(tmp_path), 64, 64, 0, speaking=0.5)
    with pytest.raises(FlowactError, match="0 to 1"):
        make_source("synth", 64, 64, 0, speaking=1.5)


def _pretrain_on_cache(cache, preset, **kw):
    """2 pretrain steps (batch 2) on a latent cache folder, from its init weights."""
    run = TrainRun(
        stage="pretrain",
        preset=preset,
        data=str(cache),
        out=cache.parent / "run",
        steps=2,
        batch=2,
        lr=1e-3,
        warmup=1,
        init=cache / "init.safetensors",
        bf16=False,
        **kw,
    )
    return train(run)


def test_latent_cache_serves_the_vaes_normalised_latents(tmp_path, vae_weights):
    """The cache holds what the VAE's encode() gives on [reference | frames] (zero mean, unit
    variance per channel), the pretrain stage trains on it, and decode() inverts the normalisation."""
    from flowact import weights as W
    from flowact.train.cache import LatentSource, build_cache
    from flowact.train.data import make_source
    from flowact.world.clip import clip_seed, heldout_character, make_clip, split_seed

    p = load_preset(TINY)
    m = FlowActModel(p)
    W.load_into(m, W.resolve(p, weights=vae_weights[0] / "vae.safetensors"))
    m.eval()
    build_cache(m, tmp_path / "c", 3, 1.0, seed=5, labels=True)
    src = make_source(str(tmp_path / "c"), 64, 64, 0)
    assert isinstance(src, LatentSource) and len(src) == 3
    z = src.z.astype(np.float32)
    assert z.shape == (3, 4, 1 + 25 // 4, 8, 8)
    assert np.allclose(z.mean(axis=(0, 2, 3, 4)), 0, atol=0.05) and np.allclose(z.std(axis=(0, 2, 3, 4)), 1, atol=0.05)
    # the clips are training characters; an entry equals encoding its clip again
    cs = split_seed(clip_seed(5, 1), "train")
    assert not heldout_character(cs)
    clip = make_clip(cs, 24 / 25, 64, 64, split="train")
    video = np.concatenate([clip.reference()[None], clip.render_all()[:24]])
    x = torch.from_numpy(video).float().div(127.5).sub(1).permute(3, 0, 1, 2)[None]
    m2 = FlowActModel(p)
    W.load_into(m2, W.resolve(p, weights=tmp_path / "c" / "init.safetensors"))
    with torch.no_grad():
        again = m2.vae.encode(x)[0].numpy()
        assert np.abs(again - z[1]).max() < 0.02  # float16 storage
        back = m2.vae.decode(m2.vae.encode(x))
        plain = m.vae.decoder(m.vae.encoder(x)[0])
    assert torch.allclose(back, plain, atol=1e-4)
    # a window: reference latent first, then 2 chunks' latents; audio and prompts cover its frames
    s = src.sample(3, 0, 16)
    assert s.frames is None and s.latents.shape == (4, 5, 8, 8)
    assert any(np.array_equal(s.latents[:, 0], z[c, :, 0]) for c in range(3))
    assert s.audio.shape == ((16 + 2 * AUDIO_MARGIN) * 640,) and s.audio_margin == AUDIO_MARGIN
    assert len(s.prompts) == 16
    # --labels: the world's mouth parameters per frame and the open mouth on the latent grid
    assert s.visemes.shape == (16, 5) and s.latent_mouth.shape == (4, 8, 8)
    assert 0 <= s.latent_mouth.min() and s.latent_mouth.max() <= 1 and 0 <= s.visemes.min() and s.visemes.max() <= 1
    assert src.visemes.shape == (3, 24, 5) and src.mouth.shape == (3, 6, 8, 8)
    assert np.allclose(src.visemes[1], clip.mouth.stack()[:24], atol=1e-3)  # float16 storage
    assert _pretrain_on_cache(tmp_path / "c", p)["steps"] == 2
    with pytest.raises(Exception, match="needs video frames"):
        train(
            TrainRun(stage="vae", preset=p, data=str(tmp_path / "c"), out=tmp_path / "v", steps=1, batch=1, bf16=False)
        )


def test_heldout_split_keeps_characters_and_voices_apart():
    from flowact.world.clip import heldout_character, split_seed
    from flowact.world.speech import HELDOUT_VARIANTS, random_voice

    rng = np.random.default_rng(0)
    train_v = {random_voice(rng, split="train").name.split("+")[1] for _ in range(200)}
    held_v = {random_voice(rng, split="heldout").name.split("+")[1] for _ in range(60)}
    assert not train_v & set(HELDOUT_VARIANTS) and held_v == set(HELDOUT_VARIANTS)
    seeds = [split_seed(s, "train") for s in range(100)]
    assert not any(heldout_character(s) for s in seeds)
    assert all(heldout_character(split_seed(s, "heldout")) for s in range(100))
    src = SynthSource(3, 64, 64, seconds=1.0)
    assert src.sample(0, 0, 8).frames.shape == (8, 64, 64, 3)


def test_learning_rate_warms_up_holds_and_decays():
    from flowact.train.loop import learning_rate

    run = TrainRun(
        stage="pretrain", preset=load_preset(TINY), data="synth", out=None, steps=100, lr=1.0, warmup=10, decay=0.2
    )
    lrs = [learning_rate(run, s) for s in range(100)]
    assert lrs[0] == 0.1 and lrs[9] == 1.0 and lrs[79] == 1.0
    assert all(a >= b for a, b in zip(lrs[80:], lrs[81:])) and abs(lrs[99] - 0.1) < 1e-9
    assert (
        learning_rate(
            TrainRun(stage="pretrain", preset=load_preset(TINY), data="synth", out=None, steps=100, lr=1.0, warmup=1),
            99,
        )
        == 1.0
    )
    # the motion engine's and the judge's shape: half a cosine from lr at the ramp's first step to the floor
    from flowact.train.loop import Run

    cos = [
        learning_rate(Run(out=None, steps=100, lr=1.0, warmup=1, decay=1.0, cosine=True, floor=0.0), s)
        for s in range(100)
    ]
    assert cos[0] == 1.0 and abs(cos[50] - 0.5) < 1e-12 and all(a > b for a, b in zip(cos, cos[1:])) and cos[99] < 1e-3


class Toy:
    """An objective of the loop at its smallest: w^2 on one weight, starting at 1; at `nan_at` (a
    0-based step) the loss is NaN, and with `sqrt` it is sqrt(|w|) at w = 0 (a finite loss, an
    infinite gradient)."""

    name = "toy"

    def __init__(self, nan_at: int = -1, sqrt: bool = False):
        self.model = torch.nn.Linear(1, 1, bias=False)
        torch.nn.init.constant_(self.model.weight, 0.0 if sqrt else 1.0)
        self.nan_at, self.sqrt = nan_at, sqrt

    def parameters(self):
        return list(self.model.parameters())

    def batch(self, step, rows):
        return step

    def loss(self, step, g):
        w = self.model.weight.sum()
        loss = w.abs().sqrt() if self.sqrt else w**2
        return loss * (float("nan") if step == self.nan_at else 1.0), {}

    def save(self, path):
        path.write_text("toy")


@pytest.mark.parametrize("case", ["loss", "gradient"])
def test_the_loop_stops_on_a_nan_before_it_reaches_the_weights(tmp_path, case):
    """A NaN loss at step 3 (a checkpoint at step 2), or an infinite gradient at step 1: the run
    stops with an error that names the objective, the step and what is not finite, and says where
    to resume; the weights keep the last finite step's values and no weights file is written."""
    from flowact.errors import FlowactError
    from flowact.train.loop import Run, fit

    toy = Toy(nan_at=2) if case == "loss" else Toy(sqrt=True)
    run = Run(out=tmp_path, steps=5, lr=0.1, warmup=1, save_every=2, bf16=False)
    expect = (
        r"toy step 3: the loss is nan .*checkpoint at step 2"
        if case == "loss"
        else r"toy step 1: the gradient's norm is (nan|inf) .*start again"
    )
    seen = []
    with pytest.raises(FlowactError, match=expect):
        fit(run, lambda ranks: toy, lambda step, rec: seen.append(float(toy.model.weight)))
    assert len(seen) == (2 if case == "loss" else 0)
    assert float(toy.model.weight) == (seen[-1] if seen else 0.0)  # the failing step did not move it
    assert not (tmp_path / "toy.safetensors").exists()


def test_motion_weights_mark_what_differs_from_the_reference():
    from flowact.train.objective import motion_weights
    from flowact.train.objective import wmean as _wmean

    x = torch.zeros(1, 3, 4, 32, 32)
    x[:, :, 2, 10:12, 20:22] = 0.5  # a "mouth" opens in frame 2 only
    w = motion_weights(x, 4.0)
    assert w.shape == (1, 1, 4, 32, 32)
    assert torch.all(w[:, :, :2] == 1) and torch.all(w[:, :, 3] == 1)  # the reference and unchanged frames
    assert torch.all(w[0, 0, 2, 7:15, 17:25] == 5)  # the change, dilated by 3 px
    assert w[0, 0, 2, 0, 0] == 1 and w[0, 0, 2, 16, 26] == 1
    assert torch.equal(motion_weights(x, 0.0), torch.ones_like(w))
    err = torch.rand(2, 3, 4, 32, 32)
    assert torch.allclose(_wmean(err, torch.ones(2, 1, 4, 32, 32)), err.mean())  # uniform weights: the plain mean
    err2 = torch.zeros_like(err[:1])
    err2[:, :, 2, 10:12, 20:22] = 1.0  # error only where the frame moved counts more with weights
    assert _wmean(err2, w) > 3 * err2.mean()


def _lips_preset():
    import dataclasses

    from flowact.config import LipsConfig

    return dataclasses.replace(load_preset(TINY), lips=LipsConfig(width=8))


def test_lip_refiner_trains_on_closed_mouths_and_runs_in_the_stream(tmp_path, vae_weights):
    """The lips stage grows a refiner on a finished model (nothing else changes) and lowers
    its loss on a speaking clip whose mouth its input never shows; the stream then needs the
    chunk's audio to decode, and the refiner changes the frames."""
    from safetensors.torch import load_file

    from flowact import weights as W
    from flowact.errors import FlowactError
    from flowact.stream.generator import AudioTrack, TextTrack

    src = FixedSource(seed=4, mouth=True, speaking=1.0)
    s0 = src.sample(0, 0, 8)
    assert s0.closed.shape == s0.frames.shape and s0.mouth.sum() > 0
    assert np.abs(s0.closed.astype(int) - s0.frames.astype(int)).max() > 12  # the input really lacks the open mouth
    init = vae_weights[0] / "vae.safetensors"
    out = _run(tmp_path, "lips", 30, 3e-3, init=init, preset=_lips_preset(), source=src)
    assert out["loss_last"] < 0.8 * out["loss_first"], out
    trained, before = load_file(str(tmp_path / "lips.safetensors")), load_file(str(init))
    assert any(k.startswith("lips.") for k in trained)
    assert float(trained["lips.gate_on"]) == 1  # the stage turns the mouth map on
    assert all(torch.equal(trained[k], v) for k, v in before.items())  # the refiner alone trained
    with pytest.raises(FlowactError, match="lip refiner"):
        _run(tmp_path / "none", "lips", 1, 1e-3, init=init, source=src)

    p = _lips_preset()
    m = FlowActModel(p)
    W.load_into(m, W.resolve(p, weights=tmp_path / "lips.safetensors"))
    m.eval()
    frames = {}
    for lips in (True, False):
        if not lips:
            m.lips = None
        gen = StreamGenerator(m, 0)
        gen.start(s0.reference)
        track = AudioTrack(m, s0.audio, "cpu")
        a, mel = track.chunk(0, 2)
        z = gen.chunk(0, a, TextTrack(m).tokens("speaking"))
        if lips:
            with pytest.raises(ValueError, match="mel windows"):
                StreamGenerator(m, 0).decode(z)
        frames[lips] = gen.decode(z, mel)
    assert frames[True].shape == frames[False].shape == (8, 64, 64, 3)
    assert np.abs(frames[True].astype(int) - frames[False].astype(int)).max() > 0


def test_the_lip_refiners_mouth_map_learns_where_the_mouth_is(tmp_path, vae_weights):
    """--only lips.gate.: the map alone trains, and on a fixed clip it comes to open on the
    mouth's cells and close elsewhere."""
    from safetensors.torch import load_file

    src = FixedSource(seed=4, mouth=True, speaking=1.0)
    init = vae_weights[0] / "vae.safetensors"
    _run(tmp_path, "lips", 40, 1e-2, init=init, preset=_lips_preset(), source=src, only=("lips.gate.",))
    rows = [json.loads(line) for line in (tmp_path / "lips" / "log.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "gate_bce" in r]
    first, last = rows[0], rows[-1]
    assert last["gate_bce"] < 0.5 * first["gate_bce"], (first, last)
    assert last["gate_in"] > 0.7 and last["gate_out"] < 0.2, last
    assert float(load_file(str(tmp_path / "lips.safetensors"))["lips.gate_on"]) == 1
    # a lips run that leaves the map out does not turn an untrained map on
    _run(tmp_path / "ear", "lips", 1, 1e-3, init=init, preset=_lips_preset(), source=src, only=("lips.ear_",))
    assert float(load_file(str(tmp_path / "ear" / "lips.safetensors"))["lips.gate_on"]) == 0


def test_engine_can_leave_the_lip_refiner_out(tmp_path):
    import yaml

    from flowact.routes import load_route

    doc = yaml.safe_load(open(TINY))
    doc["lips"] = {"width": 8}
    yml = tmp_path / "tiny-lips.yaml"
    yml.write_text(yaml.safe_dump(doc))
    on = load_route(str(yml), device="cpu", random_weights=True)
    off = load_route(str(yml), device="cpu", random_weights=True, lips=False)
    assert on.model.lips is not None and off.model.lips is None
    assert "lip refiner on" in on.conditions() and "lip refiner off" in off.conditions()
    assert "lip refiner" not in load_route(TINY, device="cpu", random_weights=True).conditions()


def _shipped_stride_tiny():
    """The tiny model with toon-128's memory: 4 long-term slots at stride 4, chunks of 2."""
    import dataclasses

    p, shipped = load_preset(TINY), load_preset("toon-128")
    return dataclasses.replace(p, stream=shipped.stream)


def test_bank_holds_the_frames_the_layout_says_over_many_chunks():
    from flowact.stream.bank import MemoryBank

    p = _shipped_stride_tiny()
    lay, bank = TokenLayout.of(p), MemoryBank.of(p)
    C = p.stream.chunk_latents
    for index in range(30):  # the bank as chunk `index` is denoised
        lt, st = lay.memory_frames(index)
        assert bank.long_term == lt and (bank.short_term or []) == st, index
        bank.commit(index * C)
    assert lay.memory_frames(12) == ([8, 12, 16, 20], [22, 23])  # the stride gaps pretrain never shows
    assert lay.memory_cycle() == 10  # toon-128's bank shows every layout it will by chunk 9


def test_memory_stage_trains_exactly_what_the_stream_computes_over_many_chunks():
    """The memory stage's pass for chunk j (its context written by teacher-forced memory passes)
    is the streaming denoiser's pass for chunk j, for j up to 13 on the shipped stride: the bank
    layouts of a long stream (long-term slots at stride gaps) are the ones training sees."""
    from flowact.stream.generator import AudioTrack, TextTrack, from_pixels
    from flowact.train.stages import Stage, StageSettings

    p = _shipped_stride_tiny()
    m = FlowActModel(p)
    m.init_random(0)
    m.eval()
    C, per, chunks = p.stream.chunk_latents, p.frames_per_chunk, 14
    clip = SynthSource(3, 64, 64, seconds=6.0).sample(0, 0, chunks * per)
    gen = StreamGenerator(m, 7)
    atrack, ttrack = AudioTrack(m, clip.stream_audio(), gen.device), TextTrack(m)
    gen.start(clip.reference)
    first_v, latents = [], []
    with torch.no_grad():
        for j in range(chunks):
            a, tx = atrack.tokens(j * C, C), ttrack.tokens(clip.prompts[j * per])
            first_v.append(m.dit(gen.noise(j), torch.ones(1), a, tx, gen.bank.view(), gen.cos, gen.sin))
            latents.append(gen.chunk(j, a, tx))
    assert (gen.bank.long_term, gen.bank.short_term) == TokenLayout.of(p).memory_frames(chunks)
    stage = Stage("memory", m, p, StageSettings())
    z = torch.cat(latents, dim=2)
    for j in (0, 1, 5, 10, 13):
        tf, atr, ttr = stage.rollout_bank(m, clip, j, z, 0)
        with torch.no_grad():
            a, tx = atr.tokens(j * C, C), ttr.tokens(clip.prompts[j * per])
            v = m.dit(gen.noise(j), torch.ones(1), a, tx, tf.bank.view(), tf.cos, tf.sin)
        assert tf.bank.long_term == TokenLayout.of(p).memory_frames(j)[0]
        assert torch.allclose(v, first_v[j], atol=1e-5), j
    # pretrain's one pass over consecutive frames (every earlier frame, at consecutive times) agrees
    # with the stream on chunk 1 and not on chunk 5, whose bank holds frames 0 and 4 of the first 8
    text = torch.cat([ttrack.tokens(clip.prompts[j * per]) for j in range(6)])[None]
    with torch.no_grad():
        ref = m.vae.encode(from_pixels(clip.reference, "cpu", torch.float32))
        gap = {}
        for j in (1, 5):
            x = torch.cat([z[:, :, : j * C], gen.noise(j)], dim=2)
            t = torch.tensor([[0.0] * j + [1.0]])
            audio = atrack.tokens(0, (j + 1) * C)
            v = m.dit.forward_train(ref, x, t, audio, text[:, : j + 1], TokenLayout.of(p))[:, :, -C:]
            gap[j] = float((v - first_v[j]).abs().max())
    print(gap)
    assert gap[1] < 1e-5 and gap[5] > 100 * gap[1], gap


def test_memory_stage_learns_on_a_fixed_clip(tmp_path, vae_weights):
    s = _run(tmp_path, "memory", 12, 2e-3, init=vae_weights[0] / "vae.safetensors", preset=_shipped_stride_tiny())
    assert s["loss_last"] < 0.9 * s["loss_first"], s


def test_augmented_audio_is_another_microphone_and_repeatable():
    from flowact.train.objective import heard_elsewhere

    clip = SynthSource(3, 64, 64, seconds=2.0, speaking=1.0).sample(0, 0, 16)
    a = heard_elsewhere(clip, 1.0, (0, 5, 1))
    b = heard_elsewhere(clip, 1.0, (0, 5, 1))
    assert np.array_equal(a.audio, b.audio) and a.audio.shape == clip.audio.shape
    assert not np.allclose(a.audio, clip.audio, atol=1e-3)
    assert a.frames is clip.frames and a.prompts == clip.prompts  # only the sound changes
    assert heard_elsewhere(clip, 0.0, (0, 5, 1)) is clip


def test_pixel_weight_decodes_the_predicted_mouth(tmp_path, vae_weights):
    """--pixel-weight: a cache built with --frames serves the window's pixels; the decoded-mouth
    L1 of the true latents is exactly the L1 of the stream's own decode on the mouth region; on
    pretrain and memory it adds to the loss and its gradient reaches the transformer; without
    pixels it is refused, naming --frames."""
    from flowact import weights as W
    from flowact.errors import FlowactError
    from flowact.train.cache import LatentSource, build_cache
    from flowact.train.objective import decoded_mouth_l1, latent_mouth
    from flowact.train.stages import Stage, StageSettings

    p = load_preset(TINY)
    m = FlowActModel(p)
    W.load_into(m, W.resolve(p, weights=vae_weights[0] / "vae.safetensors"))
    m.eval()
    build_cache(m, tmp_path / "c", 2, 1.0, seed=5, labels=True, frames_too=True, speaking=1.0)
    build_cache(m, tmp_path / "nf", 1, 1.0, seed=5, labels=True)
    src = LatentSource(tmp_path / "c")
    W.load_into(m, W.resolve(p, weights=tmp_path / "c" / "init.safetensors"))
    s = src.sample(0, 1, 16)
    assert s.frames.shape == (16, 64, 64, 3) and s.frames.dtype == np.uint8
    c = next(c for c in range(2) if np.array_equal(src.ref[c], s.reference))
    f0 = next(f for f in range(0, 25 - 16 + 1, 4) if np.array_equal(src.frames[c, f : f + 16], s.frames))
    assert np.array_equal(s.latents[:, 1:], src.z[c, :, 1 + f0 // 4 : 1 + f0 // 4 + 4].astype(np.float32))
    # the true latents of the window's second chunk: the same L1 as decoding the whole window by hand
    z = torch.from_numpy(s.latents)[None]
    with torch.no_grad():
        l1, has = decoded_mouth_l1(m, [s], z, z[:, :, 3:5], 2)
        ref = torch.from_numpy(s.reference).float().div(127.5).sub(1).permute(2, 0, 1)[None]
        video = m.vae.decode(z, reference=ref)
    truth = torch.from_numpy(s.frames[8:16]).float().div(127.5).sub(1).permute(3, 0, 1, 2)[None]
    region = torch.nn.functional.interpolate(latent_mouth([s], z[:, :, 1:]).amax(dim=2), size=(64, 64))[:, :, None]
    assert region.sum() > 0 and has.item() == 1
    want = ((video[:, :, 9:17] - truth).abs().mean(dim=1, keepdim=True) * region).sum() / (region.sum() * 8)
    assert abs(l1.item() - want.item()) < 1e-5 and l1.item() > 0.01
    batch = [src.sample(0, 0, 16)]
    for name in ("pretrain", "memory"):
        stage = Stage(name, m, p, StageSettings(pixel_weight=2.0))
        plain = Stage(name, m, p, StageSettings())
        m.zero_grad()
        loss, logs = stage.loss(batch, torch.Generator().manual_seed(0))
        with torch.no_grad():
            loss_p, _ = plain.loss(batch, torch.Generator().manual_seed(0))
        assert logs["pixel_l1"] > 0 and abs(float(loss.detach()) - float(loss_p) - 2.0 * logs["pixel_l1"]) < 1e-4, name
        (loss - loss_p).backward()  # the pixel term alone
        assert any(q.grad is not None and q.grad.abs().sum() > 0 for q in m.dit.parameters()), name
        with pytest.raises(FlowactError, match="--frames"):
            stage.loss([LatentSource(tmp_path / "nf").sample(0, 0, 16)], torch.Generator().manual_seed(0))
    out = _pretrain_on_cache(tmp_path / "c", p, settings=StageSettings(pixel_weight=1.0))
    assert out["steps"] == 2 and np.isfinite(out["loss_last"])
