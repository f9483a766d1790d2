"""Lift the decoder's reference blend off the mouth, then teach the decoder to draw the mouth there.

    python scripts/decoder_mouth.py --map-steps 200 --draw-steps 200 --out runs/dm/model.safetensors

The reference-conditioned decoder blends its drawing towards the reference image, whose mouth is
closed; over the mouth's region the trained blend is 0.73-0.88 even when the mouth opens, so the
mouth the latents carry is mostly painted over (docs/experiments.md, "The reference blend hides
the mouth"). Two phases, everything else frozen:

1. map: the decoder's mouth keep-out (`vae.decoder.mouth`, a 2-conv head on each frame's 1/8
   activations) learns where the mouth is, open or closed, from the world's mouth place on the
   1/8 grid (binary cross-entropy, the mouth's cells weighted 10, as the lip refiner's map);
   then its bias is calibrated (the weight's lift of the logits, log 10, taken out) and it is
   switched on (`mouth_on`).
2. draw: the decoder after the map's inputs (its 1/8 layers and the reference's features stay
   frozen, so the map stays where it was trained) fine-tunes on the frozen encoder's latents with
   scripts/encoder_mouth.py's loss, the mouth's whole region weighted: with the blend lifted
   there, that region's gradient reaches the decoder's own drawing in full.

The latent space is untouched, so every transformer and latent cache built on it works as it is.
The reconstruction's pixel check (scripts/mouth_check.py's measure, its held-out clips) is printed
at the start, after the map and every `--eval-every` draw steps.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from encoder_mouth import HeldOut, Windows, region_l1, region_weights, save_weights  # noqa: E402

# the decoder's parameters the keep-out's map depends on (its own and its inputs')
MAP_INPUTS = ("mouth.", "conv_in.", "res0.", "time_up.", "ref.")
POS_WEIGHT = 10.0  # the mouth is a few of 256 cells at 1/8 size


def place_cells(samples, size: tuple[int, int], frames: int, device) -> torch.Tensor:
    """(b * frames, 1, h, w): each window's mouth place (open or closed) on the 1/8 grid, every frame."""
    place = torch.from_numpy(np.stack([s.place for s in samples])).float()[:, None]
    cells = F.adaptive_max_pool2d(place, size)
    return cells.repeat_interleave(frames, dim=0).to(device)


def open_weights(samples, x: torch.Tensor) -> torch.Tensor:
    """(b, 1, T, H, W): 1 where the mouth is open in that frame (the world's mouth mask), dilated
    3 px; never on the reference frame."""
    m = torch.from_numpy(np.stack([s.mouth for s in samples])).float()  # (b, T - 1, H, W)
    b, t = m.shape[:2]
    m = F.max_pool2d(m.view(b * t, 1, *m.shape[2:]), 7, 1, 3).view(b, 1, t, *m.shape[2:])
    return torch.cat([torch.zeros_like(m[:, :, :1]), m], dim=2).to(x.device)


def map_loss(logits: torch.Tensor, cells: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """(BCE with the mouth's cells weighted, the map's mean on them, its mean elsewhere)."""
    logits = logits.float()
    w = 1 + (POS_WEIGHT - 1) * cells
    bce = F.binary_cross_entropy_with_logits(logits, cells, weight=w)
    p = torch.sigmoid(logits.detach())
    inside = float((p * cells).sum() / cells.sum().clamp_min(1))
    outside = float((p * (1 - cells)).sum() / (1 - cells).sum().clamp_min(1))
    return bce, inside, outside


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="toon-128")
    ap.add_argument("--weights", default=None, help="starting weights (default: the preset's bundled ones)")
    ap.add_argument("--map-steps", type=int, default=200)
    ap.add_argument("--draw-steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--map-lr", type=float, default=1e-3)
    ap.add_argument("--lr", type=float, default=3e-4, help="the draw phase's learning rate")
    ap.add_argument("--region-weight", type=float, default=50.0)
    ap.add_argument(
        "--draw-on",
        choices=["region", "open"],
        default="region",
        help="draw phase: weight the mouth's whole region in every frame (region), or only the pixels "
        "where the mouth is open in that frame (open: the closed median no longer wins the region)",
    )
    ap.add_argument("--speaking", type=float, default=0.7)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--clips", type=int, default=4, help="held-out clips of the pixel check")
    ap.add_argument("--eval-seconds", type=float, default=8.0, help="their length (the check's: 8 s)")
    ap.add_argument("--out", type=Path, default=None, help="the whole model's weights, the VAE replaced")
    ap.add_argument("--vae-out", type=Path, default=None, help="the VAE's weights alone (a few MB)")
    ap.add_argument("--json", type=Path, default=None, help="conditions and every evaluation, rewritten after each")
    ap.add_argument("--bf16", action="store_true", help="train under bf16 autocast (native-bf16 CPUs, GPUs)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=0, help="processes drawing the world's windows (0: in line)")
    ap.add_argument("--random-weights", action="store_true", help="start from random weights (dry runs)")
    a = ap.parse_args()
    if not (a.out or a.vae_out):
        ap.error("name --out or --vae-out")

    from flowact import weights as W
    from flowact.config import load_preset
    from flowact.model import FlowActModel
    from flowact.train.objective import to_video

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    device = torch.device(a.device)
    p = load_preset(a.preset)
    if not p.vae.ref_decoder:
        raise SystemExit(f"{a.preset}: the decoder has no reference blend (vae.ref_decoder), nothing to lift")
    frames = 2 * p.vae.temporal * p.stream.chunk_latents
    draw = Windows(a.seed, p.video.width, a.speaking, frames, a.batch, a.workers)
    m = FlowActModel(p)
    if a.random_weights:
        m.init_random(0)
    else:
        W.load_into(m, W.resolve(p, weights=a.weights))
    m.to(device).eval()
    for q in m.parameters():
        q.requires_grad_(False)
    enc, dec = m.vae.encoder, m.vae.decoder
    held = HeldOut(a.clips, a.eval_seconds, p.video.width)
    for path in (a.out, a.vae_out, a.json):
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
    conditions = {k: str(v) if isinstance(v, Path) else v for k, v in vars(a).items()} | {
        "torch": torch.__version__,
        "frames": frames,
    }
    evals: list[dict] = []
    t0 = time.perf_counter()

    def evaluate(phase: str, step: int, stats: dict) -> None:
        res = {"phase": phase, "step": step, "seconds": round(time.perf_counter() - t0, 1), **stats}
        res |= held.check(m)
        evals.append(res)
        print(json.dumps(res), flush=True)
        if a.json:
            a.json.write_text(json.dumps({"conditions": conditions, "evals": evals}, indent=1) + "\n")

    def save() -> None:
        save_weights(m, a.out, a.vae_out)

    logits_out: list[torch.Tensor] = []
    hook = dec.mouth.register_forward_hook(lambda mod, inp, out: logits_out.append(out))
    evaluate("start", 0, {})
    try:
        # 1. map: where the mouth is
        head = list(dec.mouth.parameters())
        for q in head:
            q.requires_grad_(True)
        opt = torch.optim.AdamW(head, lr=a.map_lr, weight_decay=0.0)
        hist: list[tuple] = []
        for step in range(1, a.map_steps + 1):
            samples = draw.batch(step)
            x = to_video(samples, device)
            logits_out.clear()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=a.bf16):
                z, _ = enc(x)
                dec(z, reference=x[:, :, 0])
            logits = logits_out[-1]
            bce, inside, outside = map_loss(logits, place_cells(samples, logits.shape[-2:], x.shape[2], device))
            opt.zero_grad(set_to_none=True)
            bce.backward()
            opt.step()
            hist.append((float(bce.detach()), inside, outside))
            if step % 10 == 0:
                h = np.array(hist[-10:]).mean(axis=0)
                dt = (time.perf_counter() - t0) / step
                print(f"map {step}: bce {h[0]:.4f} in {h[1]:.3f} out {h[2]:.3f} ({dt:.2f} s/step)", flush=True)
        for q in head:
            q.requires_grad_(False)
        if a.map_steps:
            # the loss weighted the mouth's cells POS_WEIGHT times, which lifts every logit by about
            # log(POS_WEIGHT): taken back out, the map reads as the chance that a pixel is the mouth's
            # (a map that spills onto the eyes blurs them: the blend is what draws them sharp)
            with torch.no_grad():
                dec.mouth[-1].bias.sub_(math.log(POS_WEIGHT))
            dec.mouth_on.fill_(1.0)
            h = np.array(hist[-min(25, len(hist)) :]).mean(axis=0)
            evaluate("map", a.map_steps, {"bce": round(h[0], 4), "map_in": round(h[1], 3), "map_out": round(h[2], 3)})
            save()
        # 2. draw: the decoder's own drawing where the blend is lifted
        # what the map reads (the 1/8 layers and the reference's features, which reach them) stays
        # frozen too: trained, it moves the map off the mouth (the small faces first)
        params = [q for n, q in dec.named_parameters() if not n.startswith(MAP_INPUTS)]
        for q in params:
            q.requires_grad_(True)
        opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.0)
        hist = []
        for step in range(1, a.draw_steps + 1):
            samples = draw.batch(a.map_steps + step)
            x = to_video(samples, device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=a.bf16):
                with torch.no_grad():
                    z, _ = enc(x)
                rec = dec(z, reference=x[:, :, 0]).float()
            where = region_weights(samples, x) if a.draw_on == "region" else open_weights(samples, x)
            l1, region = region_l1(rec, x, 1 + a.region_weight * where)
            opt.zero_grad(set_to_none=True)
            l1.backward()
            opt.step()
            hist.append((float(l1.detach()), float(region.detach())))
            if step % 10 == 0:
                h = np.array(hist[-10:]).mean(axis=0)
                print(f"draw {step}: l1 {h[0]:.4f} region {h[1]:.4f}", flush=True)
            if step % a.eval_every == 0 or step == a.draw_steps:
                h = np.array(hist[-min(a.eval_every, len(hist)) :]).mean(axis=0)
                evaluate("draw", step, {"l1": round(h[0], 4), "region_l1": round(h[1], 4)})
                save()
    finally:
        hook.remove()
        draw.close()
    if not (a.map_steps or a.draw_steps):
        save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
