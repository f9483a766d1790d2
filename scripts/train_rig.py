"""Train the arms' rig (model/arms.py ArmRig): where a reference picture's arms are at rest.

    python scripts/train_rig.py --preset presets/toon-128.yaml --weights runs/x.safetensors --out runs/rig.safetensors

The world's characters drawn in their reference pose (training characters only; the held-out ones,
world/clip.py heldout_character, measure it), each with its shoulders, elbows and wrists (pixels) and
its scale (pixels per character unit). Loss: the joints' distance in pixels plus the unit's. Writes the
whole model (`--weights` with the trained rig in it; the rest untouched) and prints the held-out error.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def references(seeds: list[int], size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(pictures (n, 3, size, size) in [-1, 1], joints (n, 2, 3, 2) px, pixels per unit (n,))."""
    from flowact.world.behaviour import neutral_motion
    from flowact.world.character import sample_character
    from flowact.world.clip import REST_MOUTH
    from flowact.world.draw import Renderer

    pics, joints, units = [], [], []
    for s in seeds:
        c = sample_character(s)
        r = Renderer(c, size, size)
        rest = neutral_motion(c)
        pics.append(r.frame(rest, REST_MOUTH, 0))
        joints.append(r.to_pixel_xy(rest.joints)[0])
        units.append(c.scale * size)
    x = torch.from_numpy(np.stack(pics)).float().div(127.5).sub(1).permute(0, 3, 1, 2)
    return x, torch.tensor(np.stack(joints), dtype=torch.float32), torch.tensor(units, dtype=torch.float32)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", required=True, help="a preset whose vae has arms: true")
    ap.add_argument("--weights", required=True, help="the model to put the rig into (may lack the rig)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--characters", type=int, default=4000)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()

    from flowact import weights as W
    from flowact.config import load_preset
    from flowact.model import FlowActModel
    from flowact.model.vae import Decoder
    from flowact.world.clip import heldout_character

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    p = load_preset(a.preset)
    if not p.vae.arms:
        raise SystemExit(f"train_rig: {a.preset}: vae.arms is off (nothing to train)")
    m = FlowActModel(p)
    W.load_into(m, W.resolve(p, weights=a.weights), new_ok=tuple("vae.decoder." + k for k in Decoder.ARMS_BRANCH))
    rig = m.vae.decoder.arms.float().train()
    size = p.video.height
    t0 = time.time()
    train = [s for s in range(1, 10 * a.characters) if not heldout_character(s)][: a.characters]
    held = [s for s in range(10**6, 10**6 + 16 * 200) if heldout_character(s)]
    x, j, u = references(train, size)
    hx, hj, hu = references(held, size)
    print(f"{len(train)} training and {len(held)} held-out characters drawn in {time.time() - t0:.0f} s", flush=True)
    opt = torch.optim.AdamW(rig.parameters(), lr=a.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, a.lr, total_steps=a.steps, pct_start=0.05)
    g = torch.Generator().manual_seed(0)

    def held_error() -> tuple[float, float, float]:
        rig.eval()
        with torch.no_grad():
            pj, pu = rig(hx)
        rig.train()
        d = (pj - hj).norm(dim=-1)
        return float(d.mean()), float(d.amax()), float((pu - hu).abs().mean())

    for step in range(a.steps):
        i = torch.randint(0, len(x), (a.batch,), generator=g)
        pj, pu = rig(x[i])
        loss = (pj - j[i]).norm(dim=-1).mean() + (pu - u[i]).abs().mean() / 10
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == a.steps - 1:
            mean, worst, unit = held_error()
            print(
                f"step {step}: loss {loss.item():.3f} px; held-out joints {mean:.2f} px mean, {worst:.1f} worst; "
                f"unit {unit:.2f} px ({time.time() - t0:.0f} s)",
                flush=True,
            )
    W.save(m, a.out)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
