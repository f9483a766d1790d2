"""Calibrate the lip refiner's ear: give its predicted mouth parameters the world's mean and spread.

    python scripts/calibrate_lips.py --preset presets/toon-128.yaml \
        --weights runs/t128/lips/lips.safetensors --out runs/t128/lips-cal.safetensors

A regression from audio to the world's mouth parameters (open, width, round, closed, teeth)
learns their conditional mean: it predicts the average mouth well and its swings muted, so a
mouth drawn from it barely moves. Over speech windows of training characters and voices the
script measures, per parameter, the predictions' mean and std and the world's, and stores
scale = std_world / std_pred (capped by --max-gain) and the shift that maps the predicted mean
onto the world's, as `lips.cal_scale` / `lips.cal_shift`. Everything else is copied unchanged.
Prints the before/after correlation and spread on *held-out* characters and voices.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch


def collect(model, split: str, clips: int, seed: int):
    """Predicted (raw) and true mouth parameters over `clips` speech windows of 64 frames."""
    from flowact.train.data import SynthSource
    from flowact.train.stages import Stage

    p = model.preset
    st = Stage("visemes", model, p)
    frames = 64
    src = SynthSource(seed, p.video.width, p.video.height, speaking=1.0, video=False)
    if split == "heldout":  # the same windows, drawn from held-out characters and voices
        src = _HeldOut(p, seed)
    pred, true = [], []
    with torch.no_grad():
        for i in range(clips):
            s = src.sample(0, i, frames)
            wins = st.audio_windows([s], frames // p.vae.temporal)
            pred.append(model.lips.visemes(wins, frames).float().numpy())
            true.append(s.visemes)
    return np.concatenate(pred), np.concatenate(true)


class _HeldOut:
    def __init__(self, p, seed):
        self.p, self.rng = p, np.random.default_rng(seed)

    def sample(self, step, index, frames):
        from flowact.train.data import heldout_speech
        from flowact.train.sample import Sample, cut_audio
        from flowact.world.clip import FPS

        clip, start = heldout_speech(self.rng, frames, self.p.video.width, self.p.video.height, frames / FPS + 1.0)
        return Sample(
            clip.reference(),
            None,
            cut_audio(clip.audio, start, frames),
            [""] * frames,
            visemes=clip.mouth.stack()[start : start + frames].astype(np.float32),
        )


def stats(pred, true, scale=None, shift=None):
    if scale is not None:
        pred = np.clip(pred * scale + shift, 0, 1)
    out = {}
    for k, name in enumerate(("open", "width", "round", "closed", "teeth")):
        ok = true[:, k].std() > 1e-6 and pred[:, k].std() > 1e-6
        out[name] = {
            "corr": round(float(np.corrcoef(pred[:, k], true[:, k])[0, 1]), 3) if ok else None,
            "std_pred": round(float(pred[:, k].std()), 3),
            "std_true": round(float(true[:, k].std()), 3),
        }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, required=True, help="a model with a lip refiner (the lips stage's output)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--preset", default="toon-128")
    ap.add_argument("--clips", type=int, default=200, help="training-split speech windows of 64 frames to measure on")
    ap.add_argument("--heldout", type=int, default=40, help="held-out windows to report on")
    ap.add_argument("--max-gain", type=float, default=4.0)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    from flowact import weights as W
    from flowact.config import load_preset
    from flowact.errors import FlowactError
    from flowact.model import FlowActModel

    torch.set_num_threads(args.threads)
    try:
        p = load_preset(args.preset)
        if p.lips is None:
            raise FlowactError(f"preset '{p.name}' has no lip refiner (no `lips:` section)")
        model = FlowActModel(p)
        W.load_into(model, W.resolve(p, weights=args.weights), new_ok=("lips.cal_",))
        model.eval()
        with torch.no_grad():
            model.lips.cal_scale.fill_(1.0)
            model.lips.cal_shift.zero_()
        pred, true = collect(model, "train", args.clips, args.seed)
        scale = np.minimum(true.std(0) / np.maximum(pred.std(0), 1e-6), args.max_gain)
        scale = np.where(true.std(0) > 1e-6, scale, 1.0)  # a parameter the world never moves stays as predicted
        shift = true.mean(0) - scale * pred.mean(0)
        hp, ht = collect(model, "heldout", args.heldout, args.seed + 1)
        report = {
            "scale": np.round(scale, 3).tolist(),
            "shift": np.round(shift, 3).tolist(),
            "heldout_before": stats(hp, ht),
            "heldout_after": stats(hp, ht, scale, shift),
        }
        with torch.no_grad():
            model.lips.cal_scale.copy_(torch.from_numpy(scale).float())
            model.lips.cal_shift.copy_(torch.from_numpy(shift).float())
        args.out.parent.mkdir(parents=True, exist_ok=True)
        W.save(model, args.out)
        print(json.dumps(report, indent=1))
    except FlowactError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
