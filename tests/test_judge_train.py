"""The judge's training (judge/train.py) through the one training loop: every objective draws a
window of its batch on its own (a rank's share is the global batch's rows), the audio model learns,
the state head's run resumes exactly, and a NaN stops a run before the weights."""

import json

import numpy as np
import pytest
import torch

from flowact.errors import FlowactError
from flowact.judge.net import AudioMouth, FrameJudge
from flowact.judge.train import (
    AudioObjective,
    StatesObjective,
    VisionObjective,
    judge_run,
    reading_pool,
)
from flowact.train.loop import fit


@pytest.fixture(scope="module")
def pool():
    """Readings of a random frame judge over 6 windows of 24 frames."""
    torch.manual_seed(0)
    return reading_pool(FrameJudge().eval(), 6, seed=3, log=lambda s: None)


def logged(folder, name) -> list[float]:
    return [json.loads(line)["loss"] for line in (folder / name / "log.jsonl").read_text().splitlines()]


def same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    if isinstance(a, tuple):
        return all(torch.equal(x, y) for x, y in zip(a, b))
    return torch.equal(a, b)


def rows_of(batch, rows: slice):
    if isinstance(batch, dict):
        return {k: v[rows] for k, v in batch.items()}
    if isinstance(batch, tuple):
        return tuple(v[rows] for v in batch)
    return batch[rows]


@pytest.mark.parametrize("kind", ["audio", "vision", "states"])
def test_a_ranks_rows_are_the_global_batchs_rows(kind, pool):
    """batch(step, rows 2..3) is rows 2..3 of batch(step, rows 0..3): what rank 1 of 2 draws with 2
    per rank; another step draws other windows."""
    obj = {
        "audio": lambda: AudioObjective(AudioMouth(), seed=4),
        "vision": lambda: VisionObjective(FrameJudge(), seed=4, window=2),
        "states": lambda: StatesObjective(FrameJudge(), pool, seed=4),
    }[kind]()
    whole, part = obj.batch(5, range(4)), obj.batch(5, range(2, 4))
    assert same(rows_of(whole, slice(2, 4)), part)
    assert not same(rows_of(whole, slice(0, 2)), part)  # the rows differ: the comparison could fail
    assert same(obj.batch(5, range(2)), rows_of(whole, slice(0, 2)))  # pure: the same step again
    if kind != "states":  # (6 windows: two steps may pick alike)
        assert not same(obj.batch(6, range(2)), rows_of(whole, slice(0, 2)))


def test_the_audio_model_learns_through_the_loop(tmp_path):
    torch.manual_seed(0)
    model = AudioMouth()
    run = judge_run(tmp_path, 30, 4, 3e-3, seed=0, resume=False, bf16=False)
    summary = fit(run, lambda ranks: AudioObjective(model, ranks, 0))
    assert summary["loss_last"] < 0.7 * summary["loss_first"], summary
    assert (tmp_path / "judge-audio.safetensors").is_file() and len(logged(tmp_path, "judge-audio")) == 30


class Interrupted(Exception):
    pass


def test_the_state_heads_run_resumes_exactly(tmp_path, pool):
    """A 6-step run killed during step 4 (its last checkpoint: step 3) and resumed gives an
    uninterrupted run's losses for steps 4..6, bit for bit; the head starts afresh from the seed."""

    def states(folder, **kw):
        torch.manual_seed(1)
        judge = FrameJudge()
        run = judge_run(folder, 6, 8, 2e-3, seed=0, resume=kw.pop("resume", False), bf16=False)
        return fit(run, lambda ranks: StatesObjective(judge, pool, ranks, 0), **kw)

    def stop(step, rec):
        if step == 4:
            raise Interrupted

    states(tmp_path / "straight")
    with pytest.raises(Interrupted):
        states(tmp_path / "stopped", on_step=stop)
    assert states(tmp_path / "stopped", resume=True)["resumed_from"] == 3
    a, b = logged(tmp_path / "straight", "judge-states"), logged(tmp_path / "stopped", "judge-states")
    assert b[:4] == a[:4] and b[4:] == a[3:], (a, b)
    assert len(set(a)) == 6


def test_a_nan_in_the_judges_run_stops_it(tmp_path, pool):
    bad = {**pool, "reg": pool["reg"].clone()}
    bad["reg"][:, 3] = float("nan")  # one frame of every window
    torch.manual_seed(1)
    judge = FrameJudge()
    run = judge_run(tmp_path, 4, 8, 2e-3, seed=0, resume=False, bf16=False)
    with pytest.raises(FlowactError, match=r"judge-states step 1: the loss is nan"):
        fit(run, lambda ranks: StatesObjective(judge, bad, ranks, 0))
    assert not (tmp_path / "judge-states.safetensors").exists()
    assert not np.isnan(judge.state_head[0].weight.detach().numpy()).any()
