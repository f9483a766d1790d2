"""Can the frozen decoder draw the open mouth at all? Optimise latents directly through it.

    python scripts/decoder_inversion.py --clip 1 --iters 150 --sheet runs/inversion.png

On a held-out clip, the 8-frame window (2 latent frames) with the most open mouth among the
first 40 frames is encoded as a stream encodes it ([reference | frames from the start]). Then
those latents are optimised by Adam for the decoder's output to match the true frames (L1, the
mouth's region weighted 1 + 20). Printed: the PSNR of the mouth's region with the encoder's
latents and with the optimised ones. A large gain means the decoder can draw what the encoder's
latents do not ask of it, so a transformer trained to reproduce the encoder's latents inherits
the encoder's ceiling (docs/experiments.md#the-latent-space-is-the-wall). `--sheet` writes the
face, enlarged, for the true frames, the encoder's and the optimised latents (one row each).
About 5 minutes for 150 iterations on 1 CPU thread.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="toon-128")
    ap.add_argument("--weights", default=None, help="weights (default: the preset's bundled ones)")
    ap.add_argument("--clip", type=int, default=1, help="which held-out clip (as scripts/mouth_check.py numbers them)")
    ap.add_argument("--iters", type=int, default=150)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sheet", default=None, help="PNG of the face: truth, encoder's latents, optimised latents")
    a = ap.parse_args()

    from flowact import weights as W
    from flowact.config import load_preset
    from flowact.model import FlowActModel
    from flowact.train.data import closed_frames
    from flowact.train.evaluate import heldout_clips

    torch.set_num_threads(a.threads)
    p = load_preset(a.preset)
    m = FlowActModel(p)
    W.load_into(m, W.resolve(p, weights=a.weights))
    m.eval()
    for q in m.parameters():
        q.requires_grad_(False)
    clip = list(heldout_clips(a.clip + 1, 8.0, p.video.width, p.video.height))[a.clip]
    gt = clip.render_all()
    n = len(gt) // 4 * 4
    gt = gt[:n]
    label = clip.mouth.stack()[:n, 0]
    k = int(np.argmax([label[i : i + 8].mean() for i in range(0, 32, 4)])) * 4
    moved = (np.abs(gt.astype(np.int16) - closed_frames(clip, 0, n).astype(np.int16)).max(axis=-1) > 12).any(axis=0)
    video = np.concatenate([clip.reference()[None], gt[: k + 8]])
    x = torch.from_numpy(video).float().div(127.5).sub(1).permute(3, 0, 1, 2)[None]
    ref = x[:, :, :1]
    with torch.no_grad():
        z0 = m.vae.encode(x)
    weight = 1 + 20 * torch.from_numpy(moved).float()[None, None, None]

    def decode(z):
        return m.vae.decode(z, reference=ref).float()

    def mouth_psnr(rec):
        r = ((rec[0, :, -8:].permute(1, 2, 3, 0) + 1) * 127.5).clamp(0, 255).numpy()
        err = np.mean((r[:, moved] - gt[k : k + 8][:, moved].astype(float)) ** 2)
        return 10 * np.log10(255**2 / err), r.round().astype(np.uint8)

    with torch.no_grad():
        before, r0 = mouth_psnr(decode(z0))
    z = z0.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=a.lr)
    for _ in range(a.iters):
        opt.zero_grad()
        loss = ((decode(z)[:, :, -8:] - x[:, :, -8:]).abs() * weight).mean()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after, r1 = mouth_psnr(decode(z))
    print(
        f"clip {a.clip}, frames {k}-{k + 7}: mouth-region PSNR {before:.2f} dB from the encoder's latents, "
        f"{after:.2f} dB from latents optimised through the decoder ({a.iters} steps)"
    )
    if a.sheet:
        from PIL import Image

        ys, xs = np.nonzero(moved)
        y0, x0 = max(0, int(ys.mean()) - 16), max(0, int(xs.mean()) - 20)
        s = 4
        sheet = Image.new("RGB", (8 * 40 * s, 3 * 32 * s))
        for row, frames in enumerate((gt[k : k + 8], r0, r1)):
            for j in range(8):
                face = np.ascontiguousarray(frames[j][y0 : y0 + 32, x0 : x0 + 40])
                sheet.paste(Image.fromarray(face).resize((40 * s, 32 * s), Image.NEAREST), (j * 40 * s, row * 32 * s))
        sheet.save(a.sheet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
