"""The motion engine's training (train/motion.py): each stage's loss falls on a fixed batch; the
stages run through the one training loop (`flowact train`), resume exactly, stop on a NaN, and
draw each window of a batch on its own (what a rank's share of a batch needs)."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from flowact.errors import FlowactError
from flowact.model.motion import MotionDiT
from flowact.train.motion import OBJECTIVES, MotionRun, MotionSettings, train_motion
from flowact.train.motion_data import ClipCache, augment, build_cache, make_batch


@pytest.fixture(scope="module")
def cache_file(tmp_path_factory):
    return build_cache(tmp_path_factory.mktemp("motion") / "cache.npz", 2, seconds=4.0, seed=5)


@pytest.fixture(scope="module")
def long_cache(tmp_path_factory):
    """Clips long enough for every chunk a run draws (13 chunks of 8 frames, 15% slower)."""
    return build_cache(tmp_path_factory.mktemp("motion") / "cache.npz", 2, seconds=6.0, seed=5)


def fitted(cache_file, stage: str, steps: int, lr: float, k: int = 2, teacher: bool = False):
    torch.manual_seed(0)
    cache = ClipCache(cache_file)
    m = MotionDiT()
    mean, scale = cache.statistics()
    m.mean.copy_(torch.from_numpy(mean))
    m.scale.copy_(torch.from_numpy(scale))
    t = MotionDiT().eval().requires_grad_(False) if teacher else None
    obj = OBJECTIVES[stage](m, MotionSettings(teacher_steps=3, rollout_steps=2), t)
    batch = make_batch(cache, m, [np.random.default_rng([0, i]) for i in range(4)], k)
    opt = torch.optim.Adam(obj.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss, _ = obj.loss(batch, torch.Generator().manual_seed(0))  # the same noise every step
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    return losses


def test_audio_stage_learns_the_mouth_on_a_fixed_batch(cache_file):
    losses = fitted(cache_file, "motion-audio", 30, 1e-3)
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


def test_cli_stage_names_are_the_motion_objectives():
    from flowact.cli_train import TrainStage
    from flowact.train.stage_names import MOTION_STAGES

    assert tuple(OBJECTIVES) == MOTION_STAGES
    assert {s.value for s in TrainStage} >= set(OBJECTIVES)


def run(cache_file, out, stage="motion-pretrain", **kw) -> MotionRun:
    """A tiny fp32 run of `stage` on the test cache: batch 2, steps 4."""
    kw = {"steps": 4, "batch": 2, "warmup": 1, "save_every": 2, "bf16": False, **kw}
    return MotionRun(stage=stage, out=out, cache=cache_file, settings=MotionSettings(rollout_steps=2), **kw)


def logged_losses(out, stage="motion-pretrain") -> list[float]:
    return [json.loads(line)["loss"] for line in (out / stage / "log.jsonl").read_text().splitlines()]


class Interrupted(Exception):
    pass


def interrupt_at(step: int):
    def on_step(s, rec):
        if s == step:
            raise Interrupted

    return on_step


@pytest.mark.parametrize("stage", ["motion-pretrain", "motion-selfforce"])
def test_a_resumed_motion_run_continues_exactly(long_cache, tmp_path, stage):
    """A 4-step run killed during step 3 (its last checkpoint: step 2) and resumed: steps 3 and 4 give
    an uninterrupted run's losses, bit for bit (batches from (seed, step), the noise re-seeded per
    step, the optimizer's moments restored; the learning rate's cosine spans the 4 steps in both);
    selfforce also streams its own context."""
    straight = train_motion(run(long_cache, tmp_path / "straight", stage))
    with pytest.raises(Interrupted):
        train_motion(run(long_cache, tmp_path / "stopped", stage), interrupt_at(3))
    resumed = train_motion(run(long_cache, tmp_path / "stopped", stage, resume=True))
    assert resumed["resumed_from"] == 2 and straight["resumed_from"] == 0
    a, b = logged_losses(tmp_path / "straight", stage), logged_losses(tmp_path / "stopped", stage)
    assert len(a) == 4 and len(b) == 5 and b[:3] == a[:3], (a, b)  # steps 1, 2, 3, then 3, 4 again
    assert b[3:] == a[2:], (a, b)
    assert len(set(a)) == 4  # the steps differ: the comparison could fail


def test_a_nan_in_a_motion_run_stops_it_before_the_weights(long_cache, tmp_path):
    """A cache whose labels hold a NaN: the first step that reads it stops the run with an error that
    names the stage, the step and the loss; no weights or checkpoint are written from it."""
    z = dict(np.load(long_cache))
    z["motion"] = z["motion"].copy()
    z["motion"][:, :, 5] = np.nan  # the head's yaw, everywhere
    bad = tmp_path / "bad.npz"
    np.savez(bad, **z)
    with pytest.raises(FlowactError, match=r"motion-pretrain step 1: the loss is nan .*diverged"):
        train_motion(run(bad, tmp_path / "out"))
    assert not (tmp_path / "out" / "motion-pretrain.safetensors").exists()
    assert not (tmp_path / "out" / "motion-pretrain" / "ckpt").exists()


def test_a_window_is_the_same_in_any_batch(cache_file):
    """make_batch draws window i from its own generator: rows 2..3 of a batch of 4 are the batch of
    rows 2..3 alone (what each rank draws of a data-parallel batch)."""
    m = MotionDiT()
    cache = ClipCache(cache_file)
    rngs = lambda rows: [np.random.default_rng([7, 3, i]) for i in rows]  # noqa: E731
    whole, part = make_batch(cache, m, rngs(range(4)), 2), make_batch(cache, m, rngs(range(2, 4)), 2)
    for f in ("windows", "motion", "reference", "state", "words", "no_audio"):
        assert torch.equal(getattr(whole, f)[2:], getattr(part, f)), f
    assert not torch.equal(whole.windows[:2], part.windows)  # the rows differ: the comparison could fail
    assert whole.k == 2


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
