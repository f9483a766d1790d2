"""Train a rig of the decoder: where a reference picture's arms are at rest (model/arms.py ArmRig,
`--part arms`) or its mouth, scale, head and colours (model/mouth.py MouthRig, `--part mouth`).

    python scripts/train_rig.py --preset presets/toon-128.yaml --weights runs/x.safetensors --out runs/rig.safetensors
    python scripts/train_rig.py --part mouth --preset P --weights runs/rig.safetensors --out runs/mouth.safetensors

The world's characters drawn in their reference pose (training characters only; the held-out ones,
world/clip.py heldout_character, measure it), each with what the rig finds: the arms' shoulders, elbows and
wrists (pixels) and the scale (pixels per character unit); or the mouth's centre (pixels), the scale, the
mouth's and head's size (character units) and the lips', their edge's and the surrounding colours. Loss:
distances in pixels (and colours in [-1, 1], weighted 10). Writes the whole model (`--weights` with the
trained rig in it, the mouth's switched on; the rest untouched) and prints the held-out error.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def references(seeds: list[int], size: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(pictures (n, 3, size, size) in [-1, 1], targets: joints (n, 2, 3, 2) px, unit (n,) pixels per unit,
    centre (n, 2) px of the mouth, shape (n, 3) [mouth width, head rx, head ry], colours (n, 3, 3) in [-1, 1])."""
    from flowact.world.behaviour import neutral_motion
    from flowact.world.canvas import shade
    from flowact.world.character import sample_character
    from flowact.world.clip import REST_MOUTH
    from flowact.world.draw import Renderer

    pics, t = [], {k: [] for k in ("joints", "unit", "centre", "shape", "colours")}
    for s in seeds:
        c = sample_character(s)
        r = Renderer(c, size, size)
        rest = neutral_motion(c)
        pics.append(r.frame(rest, REST_MOUTH, 0))
        t["joints"].append(r.to_pixel_xy(rest.joints)[0])
        t["unit"].append(c.scale * size)
        x, y, _ = r.mouth_place(rest)[0]
        t["centre"].append([(x - 0.5) * size + size / 2, y * size])
        t["shape"].append([c.mouth_width, c.head_rx, c.head_ry])
        around = shade(c.hair, 0.9) if c.facial_hair == "beard" else c.skin
        edge = c.outline if c.line_style == "outlined" else c.lips
        t["colours"].append(np.array([c.lips, edge, around]) / 127.5 - 1)
    x = torch.from_numpy(np.stack(pics)).float().div(127.5).sub(1).permute(0, 3, 1, 2)
    return x, {k: torch.tensor(np.array(v), dtype=torch.float32) for k, v in t.items()}


def errors(part: str, out: tuple[torch.Tensor, ...], t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per picture: each measure's error (px, or [-1, 1] colour units)."""
    if part == "arms":
        joints, unit = out
        return {"joints": (joints - t["joints"]).norm(dim=-1).mean((1, 2)), "unit": (unit - t["unit"]).abs()}
    centre, unit, shape, colours = out
    return {
        "centre": (centre - t["centre"]).norm(dim=-1),
        "unit": (unit - t["unit"]).abs(),
        "shape": (shape - t["shape"]).abs().mean(-1) * t["unit"],
        "colours": (colours - t["colours"]).abs().mean((1, 2)),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", default="arms", choices=["arms", "mouth"])
    ap.add_argument("--preset", required=True, help="a preset whose vae has arms: true (mouth: true for --part mouth)")
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
    if not (p.vae.arms if a.part == "arms" else p.vae.mouth):
        raise SystemExit(f"train_rig: {a.preset}: vae.{a.part} is off (nothing to train)")
    m = FlowActModel(p)
    grown = Decoder.ARMS_BRANCH + Decoder.MOUTH_BRANCH
    W.load_into(m, W.resolve(p, weights=a.weights), new_ok=tuple("vae.decoder." + k for k in grown))
    dec = m.vae.decoder
    rig = (dec.arms if a.part == "arms" else dec.mouth_rig).float().train()
    size = p.video.height
    t0 = time.time()
    train = [s for s in range(1, 10 * a.characters) if not heldout_character(s)][: a.characters]
    held = [s for s in range(10**6, 10**6 + 16 * 200) if heldout_character(s)]
    x, t = references(train, size)
    hx, ht = references(held, size)
    print(f"{len(train)} training and {len(held)} held-out characters drawn in {time.time() - t0:.0f} s", flush=True)
    opt = torch.optim.AdamW(rig.parameters(), lr=a.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, a.lr, total_steps=a.steps, pct_start=0.05)
    g = torch.Generator().manual_seed(0)
    weight = {"joints": 1.0, "centre": 1.0, "unit": 0.1, "shape": 1.0, "colours": 10.0}

    def held_error() -> str:
        rig.eval()
        with torch.no_grad():
            e = errors(a.part, rig(hx), ht)
        rig.train()
        return "; ".join(f"{k} {float(v.mean()):.3f} mean, {float(v.amax()):.2f} worst" for k, v in e.items())

    for step in range(a.steps):
        i = torch.randint(0, len(x), (a.batch,), generator=g)
        e = errors(a.part, rig(x[i]), {k: v[i] for k, v in t.items()})
        loss = sum(weight[k] * v.mean() for k, v in e.items())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == a.steps - 1:
            print(
                f"step {step}: loss {loss.item():.3f}; held-out {held_error()} ({time.time() - t0:.0f} s)", flush=True
            )
    if a.part == "mouth":
        dec.mouth_drawn.fill_(1.0)
    W.save(m, a.out)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
