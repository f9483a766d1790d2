"""Can the encoder learn to ask the frozen decoder for the mouth? A mouth-region fine-tune.

    python scripts/encoder_mouth.py --steps 200 --out runs/encm/model.safetensors

The decoder inversion (scripts/decoder_inversion.py) showed that the shipped decoder draws a
shaped open mouth from latents optimised through it, and that the shipped encoder's latents
ask for a blob. Fine-tuning the encoder with the `vae` stage's loss did not move it
(docs/experiments.md): there the mouth is a few percent of the loss, weighted only on the
pixels where the mouth is open in that frame (a closed true mouth under a drawn blob costs
nothing extra), and the rest of the frame, already at its optimum, sets the gradient's scale.

Here the encoder trains alone (the decoder frozen unless `--decoder`; no posterior noise, no KL) on
(with `--decoder-only`, the decoder alone on the frozen encoder's latents, so that every
transformer built on the latent space can use it as it is):
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
from mouth_check import activity, clip_truth, corr, lagged  # noqa: E402


def region_weights(samples, x: torch.Tensor) -> torch.Tensor:
    """(b, 1, T, H, W): 1 over each window's mouth region (where its mouth opens in any frame,
    dilated 3 px) in every frame but the reference."""
    m = torch.from_numpy(np.stack([s.mouth.max(axis=0) for s in samples])).float()  # (b, H, W)
    m = torch.nn.functional.max_pool2d(m[:, None], 7, 1, 3)  # (b, 1, H, W)
    w = m[:, :, None].expand(-1, -1, x.shape[2], -1, -1).clone()
    w[:, :, 0] = 0
    return w.to(x.device)


def region_l1(rec: torch.Tensor, x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(the weighted L1 that trains, the plain L1 over the mouth's region alone) of a
    reconstruction, for weights w = 1 + region_weight * region."""
    err = (rec - x).abs()
    return (err * w).sum() / (w.sum() * 3), (err * (w - 1)).sum() / ((w - 1).sum() * 3).clamp_min(1e-6)


class HeldOut:
    """The pixel check's held-out clips, rendered once: truth, mouth region, labels."""

    def __init__(self, clips: int, seconds: float, size: int):
        from flowact.train.evaluate import heldout_clips

        self.items = [(clip.reference(), *clip_truth(clip)) for clip in heldout_clips(clips, seconds, size, size)]

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


def save_weights(model, out: Path | None, vae_out: Path | None) -> None:
    """The whole model (`out`) and/or its VAE alone in fp32 (`vae_out`, a few MB)."""
    if out:
        from flowact import weights as W

        W.save(model, out)
    if vae_out:
        from safetensors.torch import save_file

        save_file({k: v.detach().float().cpu().contiguous() for k, v in model.vae.state_dict().items()}, vae_out)


_SOURCE = None


def _draw(job: tuple) -> list:
    """One batch of training windows (in a worker process, or in line)."""
    global _SOURCE
    seed, size, speaking, frames, batch, step = job
    from flowact.train.data import SynthSource

    if _SOURCE is None or _SOURCE.seed != seed:
        _SOURCE = SynthSource(seed, size, size, seconds=4.0, mouth=True, speaking=speaking)
    return [_SOURCE.sample(step, i, frames) for i in range(batch)]


class Windows:
    """The world's training windows, batch by batch; with workers, the next batches are drawn
    ahead in other processes (a GPU step is far shorter than drawing a batch on one core)."""

    def __init__(self, seed: int, size: int, speaking: float, frames: int, batch: int, workers: int):
        self.job = (seed, size, speaking, frames, batch)
        self.pool = None
        self.ahead: dict = {}
        if workers > 0:
            from concurrent.futures import ProcessPoolExecutor

            self.pool = ProcessPoolExecutor(workers)
            self.depth = 2 * workers

    def batch(self, step: int) -> list:
        if self.pool is None:
            return _draw((*self.job, step))
        for s in range(step, step + self.depth):
            if s not in self.ahead:
                self.ahead[s] = self.pool.submit(_draw, (*self.job, s))
        return self.ahead.pop(step).result()

    def close(self) -> None:
        if self.pool is not None:
            for f in self.ahead.values():
                f.cancel()
            self.pool.shutdown(wait=False, cancel_futures=True)


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
    ap.add_argument("--out", type=Path, default=None, help="the whole model's weights, the VAE replaced")
    ap.add_argument("--vae-out", type=Path, default=None, help="the VAE's weights alone (a few MB)")
    ap.add_argument("--log", type=Path, default=None, help="one JSON line per evaluation, appended")
    ap.add_argument("--json", type=Path, default=None, help="conditions and every evaluation, rewritten after each")
    ap.add_argument(
        "--fixed",
        action="store_true",
        help="overfit one batch (drawn at step 1) and, after it, optimise that batch's latents directly for "
        "as many steps (lr 0.05): can the encoder reach what the decoder can draw?",
    )
    ap.add_argument("--decoder", action="store_true", help="train the decoder too (the whole VAE)")
    ap.add_argument(
        "--decoder-only",
        action="store_true",
        help="train the decoder alone, the encoder frozen: the latent space (and every transformer and "
        "latent cache built on it) stays as it is",
    )
    ap.add_argument("--bf16", action="store_true", help="train under bf16 autocast (native-bf16 CPUs, GPUs)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=0, help="processes drawing the world's windows (0: in line)")
    ap.add_argument("--minutes", type=float, default=0.0, help="stop training after this long (0: --steps only)")
    ap.add_argument("--random-weights", action="store_true", help="start from random weights (dry runs)")
    a = ap.parse_args()
    if not (a.out or a.vae_out):
        ap.error("name --out or --vae-out")
    if a.decoder_only and (a.decoder or a.fixed):
        ap.error("--decoder-only trains the decoder alone: not with --decoder or --fixed")

    from flowact import weights as W
    from flowact.config import load_preset
    from flowact.model import FlowActModel
    from flowact.train.objective import to_video

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    device = torch.device(a.device)
    p = load_preset(a.preset)
    frames = 2 * p.vae.temporal * p.stream.chunk_latents
    # the workers fork before the model reaches a GPU
    draw = Windows(a.seed, p.video.width, a.speaking, frames, a.batch, a.workers)
    m = FlowActModel(p)
    if not a.random_weights:
        W.load_into(m, W.resolve(p, weights=a.weights))
    m.to(device).eval()
    for q in m.parameters():
        q.requires_grad_(False)
    enc = m.vae.encoder
    anchor = copy.deepcopy(enc)
    params = [] if a.decoder_only else list(enc.parameters())
    if a.decoder or a.decoder_only:
        params += list(m.vae.decoder.parameters())
    for q in params:
        q.requires_grad_(True)
    enc.train(not a.decoder_only)
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.0)
    held = HeldOut(a.clips, 8.0, p.video.width)
    for path in (a.out, a.vae_out, a.log, a.json):
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
    log = a.log.open("a") if a.log else None
    conditions = {k: str(v) if isinstance(v, Path) else v for k, v in vars(a).items()} | {
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "frames": frames,
        "region": "mouth opens anywhere in the window, dilated 3 px, every frame",
    }
    evals: list[dict] = []

    def evaluate(step: int, stats: dict) -> None:
        enc.eval()
        res = {"step": step, "seconds": round(time.perf_counter() - t0, 1), **stats, **held.check(m)}
        enc.train(not a.decoder_only)
        evals.append(res)
        print(json.dumps(res), flush=True)
        if log:
            log.write(json.dumps(res) + "\n")
            log.flush()
        if a.json:
            a.json.write_text(json.dumps({"conditions": conditions, "evals": evals}, indent=1) + "\n")

    def save() -> None:
        save_weights(m, a.out, a.vae_out)

    t0 = time.perf_counter()
    evaluate(0, {})
    spread = None
    hist: list[tuple[float, float, float]] = []
    step, saved = 0, -1
    try:
        for step in range(1, a.steps + 1):
            samples = draw.batch(1 if a.fixed else step)
            x = to_video(samples, device)
            if not a.decoder_only:  # (the frozen encoder's latents are the anchor's: nothing to pull)
                with torch.no_grad():
                    z0, _ = anchor(x)
                if spread is None:  # the latent channels' spread, fixed from the first batch
                    spread = z0.std(dim=(0, 2, 3, 4), keepdim=True).clamp_min(1e-3)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=a.bf16):
                with torch.set_grad_enabled(not a.decoder_only):
                    z, _ = enc(x)
                rec = m.vae.decoder(z, reference=x[:, :, 0]).float()
            z = z.float()
            w = 1 + a.region_weight * region_weights(samples, x)
            l1, region = region_l1(rec, x, w)
            anc = torch.zeros(()) if a.decoder_only else (((z - z0) / spread) ** 2).mean()
            loss = l1 + a.anchor * anc
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            hist.append((float(l1.detach()), float(region.detach()), float(anc.detach())))
            late = a.minutes > 0 and time.perf_counter() - t0 > 60 * a.minutes
            if step % 10 == 0:
                h = np.array(hist[-10:]).mean(axis=0)
                dt = (time.perf_counter() - t0) / step
                print(f"step {step}: l1 {h[0]:.4f} region {h[1]:.4f} anchor {h[2]:.4f} ({dt:.2f} s/step)", flush=True)
            if step % a.eval_every == 0 or step == a.steps or late:
                h = np.array(hist[-min(a.eval_every, len(hist)) :]).mean(axis=0)
                evaluate(step, {"l1": round(h[0], 4), "region_l1": round(h[1], 4), "anchor": round(h[2], 4)})
                save()
                saved = step
            if late:
                break
    finally:
        draw.close()
    if saved != step:  # --steps 0, or stopped between evaluations
        save()
    if a.fixed:  # the same batch, its latents optimised directly from the shipped encoder's
        with torch.no_grad():
            z0, _ = anchor(x)
        zz = z0.clone().requires_grad_(True)
        zopt = torch.optim.Adam([zz], lr=0.05)
        for step in range(1, a.steps + 1):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=a.bf16):
                rec = m.vae.decoder(zz, reference=x[:, :, 0]).float()
            l1, region = region_l1(rec, x, w)
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
