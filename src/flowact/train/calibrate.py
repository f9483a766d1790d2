"""Calibrate the lip refiner's ear: give its predicted mouth parameters the world's mean and spread.

    python -m flowact.train.calibrate --preset presets/toon-128.yaml \
        --weights runs/t128/lips2/visemes.safetensors --out runs/t128/lips/calibrated.safetensors

The last training step of the shipped toon-128 weights (scripts/train_toon128.sh). A regression
from audio to the world's mouth parameters (open, width, round, closed, teeth) learns their
conditional mean: it predicts the average mouth well and its swings muted, so a mouth drawn from
it barely moves. Over speech windows of training characters and voices this measures, per
parameter, the predictions' mean and std and the world's, and stores scale = std_world / std_pred
(capped by --max-gain) and the shift that maps the predicted mean onto the world's, as
`lips.cal_scale` / `lips.cal_shift`. Everything else is copied unchanged. Prints the before/after
correlation and spread on *held-out* characters and voices.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from ..world import FPS
from ..world.visemes import MOUTH_KEYS
from .data import SynthSource, heldout_speech
from .sample import Sample, cut_audio
from .stages import Stage

WINDOW = 64  # video frames per speech window


class _HeldOut:
    """Speech windows of held-out characters and voices, as SynthSource serves training ones."""

    def __init__(self, preset, seed: int):
        self.p, self.rng = preset, np.random.default_rng(seed)

    def sample(self, step: int, index: int, frames: int) -> Sample:
        clip, start = heldout_speech(self.rng, frames, self.p.video.width, self.p.video.height, frames / FPS + 1.0)
        return Sample(
            clip.reference(),
            None,
            cut_audio(clip.audio, start, frames),
            [""] * frames,
            visemes=clip.mouth.stack()[start : start + frames].astype(np.float32),
        )


def collect(model, split: str, clips: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(predicted, true) mouth parameters, each (clips * WINDOW, 5): the ear's raw (uncalibrated)
    predictions and the world's labels over `clips` speech windows of the `split` ("train" or "heldout")."""
    p = model.preset
    st = Stage("visemes", model, p)
    if split == "heldout":
        src = _HeldOut(p, seed)
    else:
        src = SynthSource(seed, p.video.width, p.video.height, speaking=1.0, video=False)
    pred, true = [], []
    with torch.no_grad():
        for i in range(clips):
            s = src.sample(0, i, WINDOW)
            wins = st.audio_windows([s], WINDOW // p.vae.temporal)
            pred.append(model.lips.visemes(wins, WINDOW).float().numpy())
            true.append(s.visemes)
    return np.concatenate(pred), np.concatenate(true)


def stats(pred: np.ndarray, true: np.ndarray, scale=None, shift=None) -> dict:
    """Per mouth parameter: correlation of prediction and truth, and both spreads."""
    if scale is not None:
        pred = np.clip(pred * scale + shift, 0, 1)
    out = {}
    for k, name in enumerate(MOUTH_KEYS):
        ok = true[:, k].std() > 1e-6 and pred[:, k].std() > 1e-6
        out[name] = {
            "corr": round(float(np.corrcoef(pred[:, k], true[:, k])[0, 1]), 3) if ok else None,
            "std_pred": round(float(pred[:, k].std()), 3),
            "std_true": round(float(true[:, k].std()), 3),
        }
    return out


def calibrate(model, clips: int = 200, heldout: int = 40, max_gain: float = 4.0, seed: int = 2024) -> dict:
    """Measure on `clips` training windows, set `model.lips.cal_scale` / `cal_shift`, and report
    the scale, the shift and the held-out statistics before and after."""
    pred, true = collect(model, "train", clips, seed)
    scale = np.minimum(true.std(0) / np.maximum(pred.std(0), 1e-6), max_gain)
    scale = np.where(true.std(0) > 1e-6, scale, 1.0)  # a parameter the world never moves stays as predicted
    shift = true.mean(0) - scale * pred.mean(0)
    hp, ht = collect(model, "heldout", heldout, seed + 1)
    with torch.no_grad():
        model.lips.cal_scale.copy_(torch.from_numpy(scale).float())
        model.lips.cal_shift.copy_(torch.from_numpy(shift).float())
    return {
        "scale": np.round(scale, 3).tolist(),
        "shift": np.round(shift, 3).tolist(),
        "heldout_before": stats(hp, ht),
        "heldout_after": stats(hp, ht, scale, shift),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m flowact.train.calibrate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--weights", type=Path, required=True, help="a model with a lip refiner (the lips stage's output)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--preset", default="toon-128")
    ap.add_argument("--clips", type=int, default=200, help="training-split speech windows of 64 frames to measure on")
    ap.add_argument("--heldout", type=int, default=40, help="held-out windows to report on")
    ap.add_argument("--max-gain", type=float, default=4.0)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    from .. import weights as W
    from ..config import load_preset
    from ..errors import FlowactError
    from ..model import FlowActModel

    torch.set_num_threads(args.threads)
    try:
        p = load_preset(args.preset)
        if p.lips is None:
            raise FlowactError(f"preset '{p.name}' has no lip refiner (no `lips:` section)")
        model = FlowActModel(p)
        W.load_into(model, W.resolve(p, weights=args.weights), new_ok=("lips.cal_",))
        model.eval()
        report = calibrate(model, args.clips, args.heldout, args.max_gain, args.seed)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        W.save(model, args.out)
        print(json.dumps(report, indent=1))
    except FlowactError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
