"""Where is the mouth lost: in the encoder's latents or in the decoder's drawing? A linear readout.

    python scripts/mouth_readout.py --clips 24 --json runs/readout.json

On held-out characters and voices (the pixel check's clips and more), the world's labelled
mouth openness is read back linearly (ridge regression, each clip's median subtracted, folds
that hold whole characters out) from three things:
- the truth's pixels: a 24x24 box around the mouth's region, 3x3-pooled, per frame;
- the VAE's reconstruction's pixels, the same box;
- the encoder's latent means: the 3x3 latent cells around the mouth, per latent frame (its
  4 frames' openness at once).
Scored as the correlation of the readout with the label on the held-out folds (overall and
within speech). If the latents read about as well as the truth and the reconstruction
reads worse, the decoder loses what the encoder kept; if the latents read as poorly as the
reconstruction, the encoder lost it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mouth_check import clip_truth, corr  # noqa: E402

BOX = 24  # pixels around the mouth's centre
POOL = 3


def features(model, clip) -> dict:
    """One clip's readout inputs: latents per latent frame, truth and reconstruction per frame."""
    ref = clip.reference()
    gt, region, label, speaking = clip_truth(clip)
    x = torch.from_numpy(np.concatenate([ref[None], gt])).float().div(127.5).sub(1).permute(3, 0, 1, 2)[None]
    with torch.no_grad():
        z = model.vae.encoder(x)[0][0].float()  # (c, 1 + n/4, h, w): the mean
        rec = model.vae.decoder(z[None], reference=x[:, :, :1])[0].float().clamp(-1, 1)
    rec = ((rec.permute(1, 2, 3, 0) + 1) * 127.5).round().byte().numpy()[1:]
    ys, xs = np.nonzero(region)
    cy, cx = int(ys.mean()), int(xs.mean())
    h, w = z.shape[2:]
    ly, lx = min(max(cy // 8, 1), h - 2), min(max(cx // 8, 1), w - 2)
    lat = z[:, 1:, ly - 1 : ly + 2, lx - 1 : lx + 2].permute(1, 0, 2, 3).reshape(z.shape[1] - 1, -1).numpy()
    size = gt.shape[1]
    y0, x0 = min(max(cy - BOX // 2, 0), size - BOX), min(max(cx - BOX // 2, 0), size - BOX)

    def box(frames: np.ndarray) -> np.ndarray:
        b = torch.from_numpy(frames[:, y0 : y0 + BOX, x0 : x0 + BOX].astype(np.float32)).permute(0, 3, 1, 2)
        return torch.nn.functional.avg_pool2d(b, POOL).reshape(len(frames), -1).numpy()

    return {"latents": lat, "truth": box(gt), "reconstruction": box(rec), "label": label, "speaking": speaking}


def ridge(x: np.ndarray, y: np.ndarray, lam: float):
    """A ridge fit on standardised inputs; returns the predictor."""
    mu, sd = x.mean(0), x.std(0) + 1e-6
    xs = (x - mu) / sd
    w = np.linalg.solve(xs.T @ xs + lam * len(xs) * np.eye(xs.shape[1]), xs.T @ (y - y.mean(0)))
    return lambda q: ((q - mu) / sd) @ w + y.mean(0)


def readout(rows: list[dict], kind: str, lam: float, folds: int = 4) -> tuple[float, float]:
    """(correlation, within speech) of the cross-validated readout, averaged over held-out clips."""

    def centred(r):
        return r[kind] - np.median(r[kind], axis=0, keepdims=True)

    def target(r):  # latents: a latent frame's 4 frames at once
        return r["label"].reshape(len(r[kind]), -1)

    scores = []
    for f in range(folds):
        train = [r for i, r in enumerate(rows) if i % folds != f]
        fit = ridge(np.concatenate([centred(r) for r in train]), np.concatenate([target(r) for r in train]), lam)
        for r in (r for i, r in enumerate(rows) if i % folds == f):
            pred = fit(centred(r)).reshape(-1)
            s = r["speaking"]
            scores.append((corr(pred, r["label"]), corr(pred[s], r["label"][s])))
    return tuple(float(v) for v in np.nanmean(np.array(scores), axis=0))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="toon-128")
    ap.add_argument("--weights", default=None, help="the model whose VAE is read (default: the preset's bundled)")
    ap.add_argument("--clips", type=int, default=24, help="held-out clips (4 folds hold a quarter out each)")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    from flowact import weights as W
    from flowact.config import load_preset
    from flowact.model import FlowActModel
    from flowact.train.evaluate import heldout_clips

    torch.set_num_threads(a.threads)
    p = load_preset(a.preset)
    model = FlowActModel(p)
    W.load_into(model, W.resolve(p, weights=a.weights))
    model.eval()
    rows = [features(model, clip) for clip in heldout_clips(a.clips, a.seconds, p.video.width, p.video.height)]
    res = {"clips": a.clips, "seconds": a.seconds, "weights": a.weights or "bundled"}
    for kind in ("truth", "reconstruction", "latents"):
        (c, cs), lam = max(((readout(rows, kind, lam), lam) for lam in (1e-2, 1e-1, 1.0, 10.0)), key=lambda t: t[0][0])
        res[kind] = {"corr": round(c, 3), "corr_speech": round(cs, 3), "lambda": lam}
        print(f"{kind:>15}: openness read back {c:.3f} (within speech {cs:.3f}; ridge lambda {lam})", flush=True)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
