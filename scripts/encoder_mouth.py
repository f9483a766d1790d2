"""Can the encoder learn to ask the frozen decoder for the mouth? A mouth-region fine-tune.

    python scripts/encoder_mouth.py --steps 200 --out runs/encm/model.safetensors

The decoder inversion (scripts/decoder_inversion.py) showed that the shipped decoder draws a
shaped open mouth from latents optimised through it, and that the shipped encoder's latents
ask for a blob. Fine-tuning the encoder with the `vae` stage's loss did not move it
(docs/experiments.md): there the mouth is a few percent of the loss, weighted only on the
pixels where the mouth is open in that frame (a closed true mouth under a drawn blob costs
nothing extra), and the rest of the frame, already at its optimum, sets the gradient's scale.

Here the encoder trains alone (the decoder frozen, no posterior noise, no KL) on:
- L1 over the mouth's region: every pixel where the mouth opens anywhere in the window,
  dilated by 3 px, in every frame of the window, open or closed (the region the pixel check
  reads), weighted `--region-weight`, plus the plain L1 over the frame at weight 1;
- an anchor: the squared distance of the latents from the shipped encoder's, in units of the
  latent spread, weighted `--anchor`, so that everything but the mouth keeps the latent space
  that the transformer and a latent cache were built on.

Every `--eval-every` steps the reconstruction's pixel check (scripts/mouth_check.py's measure,
its held-out clips) is printed beside the mouth region's PSNR. A JSON line per evaluation goes
to `--log`. About 3 s a step at batch 4 on 2 CPU threads.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mouth_check import activity, corr, dilate, lagged  # noqa: E402


def region_weights(samples, x: torch.Tensor) -> torch.Tensor:
    """(b, 1, T, H, W): 1 over each window's mouth region (where its mouth opens in any frame,
    dilated 3 px) in every frame but the reference."""
    m = torch.from_numpy(np.stack([s.mouth.max(axis=0) for s in samples])).float()  # (b, H, W)
    m = torch.nn.functional.max_pool2d(m[:, None], 7, 1, 3)  # (b, 1, H, W)
    w = m[:, :, None].expand(-1, -1, x.shape[2], -1, -1).clone()
    w[:, :, 0] = 0
    return w.to(x.device)


class HeldOut:
    """The pixel check's held-out clips, rendered once: truth, mouth region, labels."""

    def __init__(self, clips: int, seconds: float, size: int):
        from flowact.train.data import closed_frames
        from flowact.train.evaluate import heldout_clips

        self.items = []
        for clip in heldout_clips(clips, seconds, size, size):
            gt = clip.render_all()
            n = len(gt) // 4 * 4
            gt = gt[:n]
            closed = closed_frames(clip, 0, n)
            moved = (np.abs(gt.astype(np.int16) - closed.astype(np.int16)).max(axis=-1) > 12).any(axis=0)
            label = clip.mouth.stack()[:n, 0].astype(np.float32)
            speaking = dilate(label > 0.02, 6)
            self.items.append((clip.reference(), gt, dilate(moved, 3), label, speaking))

    def check(self, model) -> dict:
        from flowact.train.evaluate import reconstruct

        rows = []
        for ref, gt, region, label, speaking in self.items:
            with torch.no_grad():
                rec = reconstruct(model, ref, gt)
            act = activity(rec, region)
            err = np.mean((rec[:, region].astype(np.float64) - gt[:, region]) ** 2)
            rows.append(
                {
                    "corr": corr(act, label),
                    "corr_speech": corr(act[speaking], label[speaking]),
                    "lag": lagged(act, label)[1],
                    "region_psnr": 10 * np.log10(255**2 / err),
                }
            )
        out = {k: round(float(np.nanmean([r[k] for r in rows])), 4) for k in rows[0]}
        out["per_clip"] = [round(r["corr"], 3) for r in rows]
        return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="toon-128")
    ap.add_argument("--weights", default=None, help="starting weights (default: the preset's bundled ones)")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--region-weight", type=float, default=50.0)
    ap.add_argument("--anchor", type=float, default=0.1, help="weight of the latents' distance from the start's")
    ap.add_argument("--speaking", type=float, default=0.7)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--clips", type=int, default=4, help="held-out clips of the pixel check")
    ap.add_argument("--out", type=Path, required=True, help="the whole model's weights, the encoder replaced")
    ap.add_argument("--log", type=Path, default=None)
    ap.add_argument(
        "--fixed",
        action="store_true",
        help="overfit one batch (drawn at step 1) and, after it, optimise that batch's latents directly for "
        "as many steps (lr 0.05): can the encoder reach what the decoder can draw?",
    )
    ap.add_argument("--bf16", action="store_true", help="train under bf16 autocast (for CPUs with native bf16)")
    a = ap.parse_args()

    from flowact import weights as W
    from flowact.config import load_preset
    from flowact.model import FlowActModel
    from flowact.train.data import SynthSource
    from flowact.train.objective import to_video

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    p = load_preset(a.preset)
    m = FlowActModel(p)
    W.load_into(m, W.resolve(p, weights=a.weights))
    m.eval()
    for q in m.parameters():
        q.requires_grad_(False)
    enc = m.vae.encoder
    anchor = copy.deepcopy(enc)
    for q in enc.parameters():
        q.requires_grad_(True)
    enc.train()
    opt = torch.optim.AdamW(enc.parameters(), lr=a.lr, weight_decay=0.0)
    src = SynthSource(a.seed, p.video.width, p.video.height, seconds=4.0, mouth=True, speaking=a.speaking)
    frames = 2 * p.vae.temporal * p.stream.chunk_latents
    held = HeldOut(a.clips, 8.0, p.video.width)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    log = a.log.open("a") if a.log else None

    def evaluate(step: int, stats: dict) -> None:
        enc.eval()
        res = {"step": step, **stats, **held.check(m)}
        enc.train()
        print(json.dumps(res), flush=True)
        if log:
            log.write(json.dumps(res) + "\n")
            log.flush()

    evaluate(0, {})
    spread = None
    hist: list[tuple[float, float, float]] = []
    t0 = time.perf_counter()
    for step in range(1, a.steps + 1):
        samples = [src.sample(1 if a.fixed else step, i, frames) for i in range(a.batch)]
        x = to_video(samples, "cpu")
        with torch.no_grad():
            z0, _ = anchor(x)
        if spread is None:  # the latent channels' spread, fixed from the first batch
            spread = z0.std(dim=(0, 2, 3, 4), keepdim=True).clamp_min(1e-3)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
            z, _ = enc(x)
            rec = m.vae.decoder(z, reference=x[:, :, 0]).float()
        z = z.float()
        w = 1 + a.region_weight * region_weights(samples, x)
        err = (rec - x).abs()
        l1 = (err * w).sum() / (w.sum() * 3)
        region = (err * (w - 1)).sum() / ((w - 1).sum() * 3).clamp_min(1e-6)
        anc = (((z - z0) / spread) ** 2).mean()
        loss = l1 + a.anchor * anc
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        hist.append((float(l1.detach()), float(region.detach()), float(anc.detach())))
        if step % 10 == 0:
            h = np.array(hist[-10:]).mean(axis=0)
            dt = (time.perf_counter() - t0) / step
            print(f"step {step}: l1 {h[0]:.4f} region {h[1]:.4f} anchor {h[2]:.4f} ({dt:.2f} s/step)", flush=True)
        if step % a.eval_every == 0 or step == a.steps:
            h = np.array(hist[-a.eval_every :]).mean(axis=0)
            evaluate(step, {"l1": round(h[0], 4), "region_l1": round(h[1], 4), "anchor": round(h[2], 4)})
            W.save(m, a.out)
    if a.fixed:  # the same batch, its latents optimised directly from the shipped encoder's
        with torch.no_grad():
            z0, _ = anchor(x)
        zz = z0.clone().requires_grad_(True)
        zopt = torch.optim.Adam([zz], lr=0.05)
        for step in range(1, a.steps + 1):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
                rec = m.vae.decoder(zz, reference=x[:, :, 0]).float()
            err = (rec - x).abs()
            l1 = (err * w).sum() / (w.sum() * 3)
            region = (err * (w - 1)).sum() / ((w - 1).sum() * 3)
            zopt.zero_grad(set_to_none=True)
            l1.backward()
            zopt.step()
            if step % 10 == 0 or step == 1:
                print(
                    f"inversion step {step}: l1 {float(l1.detach()):.4f} region {float(region.detach()):.4f}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
