"""Teach the decoder's mouth keep-out where the mouth is, and switch it on.

    python scripts/train_keepout.py IN.safetensors OUT.safetensors [--steps 200] [--preset P] [--lift 1.0]
    python scripts/train_keepout.py IN.safetensors OUT.safetensors --steps 0 --lift 0.5   # only set how far

The keep-out (`vae.decoder.mouth`, two 3x3 convs on each frame's 1/8 activations) lifts the decoder's
blend towards the reference (whose mouth is closed) where the mouth is; a decoder that reads motion
draws the mouth there too (model/vae.py). Its map goes stale when the layers under it are retrained,
and a stale one lifts the blend over the whole figure (a blurred character): so it is trained again
from the world's mouth place (open or closed) on the 1/8 grid, binary cross-entropy with the mouth's
cells weighted 10, everything else frozen; then the weighting's lift of the logits (log 10) is taken
out of its bias, so the map reads as the chance that a cell is the mouth's, and `mouth_on` is set to
`--lift` (how far the blend is lifted there: 1 fully, and the lower face is the decoder's own blurred
drawing; toon-128 ships 0.5). `--steps 0` trains nothing and only sets `mouth_on`.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch
import torch.nn.functional as F

POS_WEIGHT = 10.0  # the mouth is a few of 256 cells at 1/8 size


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights")
    ap.add_argument("out")
    ap.add_argument("--preset", default="toon-128")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=23)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lift", type=float, default=1.0, help="vae.decoder.mouth_on: how far the blend is lifted, 0..1")
    a = ap.parse_args()

    from flowact import weights as W
    from flowact.config import load_preset
    from flowact.model import FlowActModel
    from flowact.model.vae import Decoder
    from flowact.train.data import SynthSource
    from flowact.train.objective import to_video

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    p = load_preset(a.preset)
    m = FlowActModel(p)
    W.load_into(m, W.resolve(p, weights=a.weights), new_ok=tuple("vae.decoder." + k for k in Decoder.MOTION_BRANCH))
    m.eval()
    for q in m.parameters():
        q.requires_grad_(False)
    dec = m.vae.decoder
    head = list(dec.mouth.parameters())
    for q in head:
        q.requires_grad_(True)
    opt = torch.optim.Adam(head, lr=a.lr)
    src = SynthSource(a.seed, p.video.width, p.video.height, mouth=True, speaking=0.7)
    frames = 2 * p.vae.temporal * p.stream.chunk_latents
    got = {}
    hook = dec.mouth.register_forward_hook(lambda mod, inp, out: got.__setitem__("logits", out))
    for step in range(a.steps):
        samples = [src.sample(step, i, frames) for i in range(a.batch)]
        x = to_video(samples, "cpu")
        with torch.no_grad():
            z = m.vae.encoder(x)[0]
        dec(z, reference=x[:, :, 0])  # the map's logits (b * (1 + frames), 1, h, w), caught by the hook
        logits = got["logits"].float()
        place = torch.from_numpy(np.stack([s.place for s in samples])).float()[:, None]
        cells = F.adaptive_max_pool2d(place, logits.shape[-2:]).repeat_interleave(logits.shape[0] // a.batch, 0)
        loss = F.binary_cross_entropy_with_logits(logits, cells, weight=1 + (POS_WEIGHT - 1) * cells)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 20 == 0 or step == a.steps - 1:
            pr = torch.sigmoid(logits.detach())
            inside = float((pr * cells).sum() / cells.sum().clamp_min(1))
            outside = float((pr * (1 - cells)).sum() / (1 - cells).sum().clamp_min(1))
            bce = float(loss.detach())
            print(f"step {step}: bce {bce:.3f}, map on the mouth {inside:.2f}, elsewhere {outside:.3f}", flush=True)
    hook.remove()
    with torch.no_grad():
        if a.steps:
            dec.mouth[-1].bias.sub_(math.log(POS_WEIGHT))  # calibrated: the weighting's lift taken out
        dec.mouth_on.fill_(a.lift)
    W.save(m, a.out)
    print(f"wrote {a.out} (keep-out lifting {a.lift:g})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
