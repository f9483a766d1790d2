"""The motion engine's training (train/motion.py): each stage's loss falls on a fixed batch, the
stages run through `flowact train` and resume."""

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from flowact.model.motion import MotionDiT
from flowact.train.motion import STAGE_CLASSES, MotionSettings
from flowact.train.motion_data import ClipCache, augment, build_cache, make_batch


@pytest.fixture(scope="module")
def cache_file(tmp_path_factory):
    return build_cache(tmp_path_factory.mktemp("motion") / "cache.npz", 2, seconds=4.0, seed=5)


def fitted(cache_file, stage: str, steps: int, lr: float, k: int = 2, teacher: bool = False):
    torch.manual_seed(0)
    cache = ClipCache(cache_file)
    m = MotionDiT()
    mean, scale = cache.statistics()
    m.mean.copy_(torch.from_numpy(mean))
    m.scale.copy_(torch.from_numpy(scale))
    t = MotionDiT().eval().requires_grad_(False) if teacher else None
    obj = STAGE_CLASSES[stage](m, MotionSettings(teacher_steps=3, rollout_steps=2), t)
    batch = make_batch(cache, m, np.random.default_rng(0), 4, k)
    opt = torch.optim.Adam(obj.trainable(), lr=lr)
    losses = []
    for _ in range(steps):
        loss, _ = obj.loss(batch, k, torch.Generator().manual_seed(0))  # the same noise every step
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    return losses


def test_audio_stage_learns_the_mouth_on_a_fixed_batch(cache_file):
    losses = fitted(cache_file, "motion-audio", 30, 3e-3)
    assert losses[-1] < 0.6 * losses[0], losses


def test_pretrain_learns_on_a_fixed_batch(cache_file):
    losses = fitted(cache_file, "motion-pretrain", 30, 3e-3)
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("stage", ["motion-selfforce", "motion-distill"])
def test_rollout_and_distill_stages_give_finite_gradients(cache_file, stage):
    losses = fitted(cache_file, stage, 2, 1e-3, teacher=stage == "motion-distill")
    assert all(np.isfinite(losses))


def test_augment_keeps_length_and_range():
    rng = np.random.default_rng(0)
    x = (np.sin(np.arange(16_000) / 5) * 0.5).astype(np.float32)
    for _ in range(5):
        y = augment(x, rng)
        assert y.shape == x.shape and y.dtype == np.float32 and np.abs(y).max() <= 1.0


def test_cli_runs_a_motion_stage_and_resumes(cache_file, tmp_path):
    from flowact.cli import app

    args = ["train", "--stage", "motion-audio", "--data", str(cache_file), "--out", str(tmp_path), "--batch", "2"]
    r = CliRunner().invoke(app, [*args, "--steps", "2", "--save-every", "1"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, [*args, "--steps", "3", "--resume", "--json"])
    assert r.exit_code == 0, r.output
    assert '"resumed_from": 2' in r.output
    assert (tmp_path / "motion-audio.safetensors").is_file()
    bad = CliRunner().invoke(app, ["train", "--stage", "motion-audio", "--data", str(tmp_path / "nope")])
    assert bad.exit_code != 0 and "motion cache" in str(bad.exception) + bad.output


def test_cli_stage_names_match_the_motion_stages():
    from flowact.cli_train import MOTION_STAGE_NAMES
    from flowact.train.motion import MOTION_STAGES

    assert MOTION_STAGE_NAMES == MOTION_STAGES == tuple(STAGE_CLASSES)


def test_rooms_and_telephone_lines_sound_like_them():
    """room(): a click leaves a decaying tail (energy where the dry signal is silent), level kept;
    telephone(): nothing left above 3.4 kHz or below 300 Hz, and the codec's mu-law keeps 256
    levels at most; augment() draws both and stays repeatable."""
    from flowact.train.motion_data import mu_law, room, telephone

    rng = np.random.default_rng(1)
    x = np.zeros(16_000, np.float32)
    x[1000:1160] = np.sin(np.arange(160) / 3) * 0.5
    y = room(x, rng)
    assert np.sqrt(np.mean(y**2)) == pytest.approx(np.sqrt(np.mean(x**2)), rel=1e-3)
    assert np.mean(y[1400:3000] ** 2) > 1e-3 * np.mean(y[1000:1160] ** 2)  # the dry signal is 0 there
    assert np.abs(y[1400:3000]).max() > 2 * np.abs(y[12_000:]).max()  # and the tail decays
    assert len(np.unique(mu_law(np.linspace(-1, 1, 10_000).astype(np.float32)))) <= 256
    noise = np.random.default_rng(2).standard_normal(32_000).astype(np.float32) * 0.1
    t = telephone(noise)
    spec = np.abs(np.fft.rfft(t)) ** 2
    f = np.fft.rfftfreq(len(t), 1 / 16_000)
    assert spec[(f > 4500) | (f < 150)].sum() < 0.01 * spec.sum()
    assert spec[(f > 500) & (f < 3000)].sum() > 0.8 * spec.sum()
    a = [augment(noise, np.random.default_rng(s)) for s in range(30)]
    assert all(np.array_equal(u, augment(noise, np.random.default_rng(s))) for s, u in enumerate(a))
