"""Does the mouth in the frames move with the speech? A pixel check against the world's own labels.

    python scripts/mouth_check.py --model shipped=src/flowact/assets/toon-128.safetensors:lips=0 \
        --preset toon-128 --clips 4 --seconds 8

`flowact eval`'s judge reads the mouth with a small learned network and is weak evidence on
some characters (docs/experiments.md). This check needs no network: on held-out characters and
voices (the clips `scripts/eval_model.py` scores), the world draws every frame again with the
mouth at rest; the pixels where the two differ, over the whole clip and dilated, are the mouth
region. A frame's mouth activity is how far that region's pixels stand from their median over the
clip. Its correlation with the world's labelled openness (mouth parameter `open`) is reported at
lag 0 and at the best lag within +-8 frames (positive: the frames trail the labels), for the
ground truth, for its VAE reconstruction (the first model's VAE: the ceiling of that latent
space), for every model (streamed as `flowact render` does) and, per model, over the frames
where the world says someone speaks.

Each --model is NAME=WEIGHTS[:steps=N,lips=0,blend=0,preset=P] (lips=0: the lip refiner off, as
`--no-lips`; blend=0: the decoder's blend towards the reference off, a diagnostic; preset: that
model's own preset instead of --preset, at the same size).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch


def activity(frames: np.ndarray, region: np.ndarray) -> np.ndarray:
    """(frames,) mean absolute deviation of the region's pixels from their median over the clip."""
    px = frames[:, region].astype(np.float32)  # (F, n, 3)
    return np.abs(px - np.median(px, axis=0, keepdims=True)).mean(axis=(1, 2))


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of a 1-D or 2-D mask by `radius` (a square / interval)."""
    t = torch.from_numpy(mask.astype(np.float32))
    k = 2 * radius + 1
    if t.dim() == 1:
        return torch.nn.functional.max_pool1d(t[None, None], k, 1, radius)[0, 0].numpy() > 0
    return torch.nn.functional.max_pool2d(t[None, None], k, 1, radius)[0, 0].numpy() > 0


def corr(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or a.std() < 1e-8 or b.std() < 1e-8:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def lagged(act: np.ndarray, label: np.ndarray, max_lag: int = 8) -> tuple[float, int]:
    """(best correlation, its lag in frames): act[t + lag] against label[t]."""
    best = (-2.0, 0)
    for lag in range(-max_lag, max_lag + 1):
        a = act[max(0, lag) : len(act) + min(0, lag)]
        b = label[max(0, -lag) : len(label) - max(0, lag)]
        c = corr(a, b)
        if c == c and c > best[0]:
            best = (c, lag)
    return best


def clip_truth(clip) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A held-out clip's ground truth as this check reads it: its frames (a multiple of 4), the
    mouth's region (where the mouth opens anywhere in the clip, dilated 3 px), the world's
    openness per frame, and the stretches of speech (pauses between words included)."""
    from flowact.train.data import closed_frames

    gt = clip.render_all()
    n = len(gt) // 4 * 4
    gt = gt[:n]
    closed = closed_frames(clip, 0, n)
    moved = (np.abs(gt.astype(np.int16) - closed.astype(np.int16)).max(axis=-1) > 12).any(axis=0)
    label = clip.mouth.stack()[:n, 0].astype(np.float32)
    return gt, dilate(moved, 3), label, dilate(label > 0.02, 6)


def blend_off(model) -> None:
    """The reference-conditioned decoder without its blend towards the reference (alpha 0): its own
    drawing everywhere. The check reads only the mouth's region, so there this is what a blend that
    spared the mouth would show."""
    dec = model.vae.decoder
    if getattr(dec, "alpha_out", None) is None:
        raise ValueError("blend=0 needs a reference-conditioned decoder (vae.ref_decoder)")
    with torch.no_grad():
        dec.alpha_out.weight.zero_()
        dec.alpha_out.bias.fill_(-30.0)


def load_models(specs: list[str], preset) -> dict:
    """NAME=WEIGHTS[:steps=N,lips=0,blend=0,preset=P] specs -> {name: (model in eval mode, stream kwargs)}."""
    from flowact import weights as W
    from flowact.config import load_preset
    from flowact.model import FlowActModel

    models = {}
    for spec in specs:
        name, _, rest = spec.partition("=")
        path, _, opts = rest.partition(":")
        kw = dict(item.split("=") for item in opts.split(",") if item)
        own = load_preset(kw.pop("preset")) if "preset" in kw else preset
        m = FlowActModel(own)
        W.load_into(m, W.resolve(own, weights=path))
        m.eval()
        if kw.pop("lips", "1") == "0":
            m.lips = None
        if kw.pop("blend", "1") == "0":
            blend_off(m)
        models[name] = (m, {"steps": int(kw["steps"])} if "steps" in kw else {})
    return models


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", required=True, help="NAME=WEIGHTS[:steps=N,lips=0,blend=0,preset=P]")
    ap.add_argument("--preset", default="toon-128")
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--engine", default="espeak", choices=["espeak", "festival"], help="held-out clips' speech engine")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    from flowact.config import load_preset
    from flowact.train.evaluate import heldout_clips, prompt_at, reconstruct, stream

    torch.set_num_threads(args.threads)
    preset = load_preset(args.preset)
    models = load_models(args.model, preset)
    # the VAE's reconstruction of the ground truth (the first model's VAE): the most any transformer
    # drawing in that latent space can show
    rows: dict[str, list] = {"ground_truth": [], "vae_reconstruction": [], **{n: [] for n in models}}
    clips = heldout_clips(args.clips, args.seconds, preset.video.width, preset.video.height, engine=args.engine)
    for i, clip in enumerate(clips):
        gt, region, label, speaking = clip_truth(clip)
        n = len(gt)
        first = next(iter(models.values()))[0]
        with torch.no_grad():
            outs = {"ground_truth": gt, "vae_reconstruction": reconstruct(first, clip.reference(), gt)}
        for name, (m, kw) in models.items():
            outs[name] = stream(m, clip.reference(), clip.audio, lambda s: prompt_at(clip, s), n, seed=i, **kw)
        for name, frames in outs.items():
            act = activity(frames, region)
            best, lag = lagged(act, label)
            rows[name].append(
                {
                    "corr": corr(act, label),
                    "corr_speech": corr(act[speaking], label[speaking]),
                    "best": best,
                    "lag_frames": lag,
                    "motion": float(act.mean()),
                }
            )
            print(f"clip {i} {name}: {rows[name][-1]}", file=sys.stderr, flush=True)
    summary = {
        name: {k: round(float(np.nanmean([r[k] for r in rs])), 4) for k in rs[0]} | {"clips": len(rs)}
        for name, rs in rows.items()
    }
    conditions = {"preset": args.preset, "clips": args.clips, "seconds": args.seconds, "engine": args.engine}
    report = {"conditions": conditions, "summary": summary}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
