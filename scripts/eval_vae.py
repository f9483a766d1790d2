"""PSNR of a VAE checkpoint on held-out characters: clips made from world seeds 0..N-1
(training draws its clip seeds at random from [0, 2^31), so these are unseen with
probability ~1 - 1e-8 each), 9-frame sequences [reference | 8 frames] at 128x128.

    python scripts/eval_vae.py WEIGHTS.safetensors [N_CHARACTERS]
"""

import sys

import numpy as np
import torch

from flowact.config import load_preset
from flowact.model import FlowActModel
from flowact import weights as W
from flowact.world.clip import make_clip
from flowact.train.sample import Sample
from flowact.train.objective import to_video

torch.set_num_threads(1)
p = load_preset("toon-128")
m = FlowActModel(p)
W.load_into(m, W.resolve(p, weights=sys.argv[1]))
m.eval()
ps = []
with torch.no_grad():
    for seed in range(int(sys.argv[2]) if len(sys.argv) > 2 else 12):
        c = make_clip(seed, 2.0, 128, 128)
        frames = np.stack([c.render(i) for i in range(10, 18)])
        x = to_video([Sample(c.reference(), frames, np.zeros(8 * 640, np.float32), [""] * 8)], "cpu")
        rec = m.vae.decode(m.vae.encode(x), reference=x[:, :, :1]).clamp(-1, 1)
        mse = torch.mean((rec[:, :, 1:] - x[:, :, 1:]) ** 2).item()  # not the reference frame itself
        ps.append(10 * np.log10(4.0 / mse))
print(f"held-out PSNR over {len(ps)} characters: median {np.median(ps):.2f} dB, min {min(ps):.2f}, max {max(ps):.2f}")
