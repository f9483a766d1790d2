"""Where does the lip refiner draw? Its change to the frames, inside and outside the mouth.

    python scripts/lips_spill.py --model shipped=src/flowact/assets/toon-128.safetensors --clips 4

On the pixel check's held-out clips (scripts/mouth_check.py), each model streams every clip
twice, with its lip refiner and without (the same transformer, the same seed, so the frames
differ only by what the refiner drew). Per clip: the share of the refiner's change (the sum of
|on - off| over the frames) that falls within 8 px of the mouth's region (where the world's
mouth opens anywhere in the clip), and the share of the pixels farther out that it changed by
more than 20 levels (of 255) in a frame. A refiner that draws only the mouth scores near 1 and
near 0. `--sheet DIR` writes, per clip, the frame with the largest change outside the mouth:
with the refiner, without it, and the change (x4).

Each --model is NAME=WEIGHTS[:preset=P] (scripts/mouth_check.py's specs; the refiner is always
compared on and off).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mouth_check import clip_truth, dilate, load_models  # noqa: E402


def spill(on: np.ndarray, off: np.ndarray, region: np.ndarray) -> tuple[dict, int]:
    """(figures, the frame with the largest change outside) for frames (F, H, W, 3) with the
    refiner and without, and the mouth's region (H, W)."""
    d = np.abs(on.astype(np.float32) - off.astype(np.float32)).mean(axis=-1)  # (F, H, W)
    near = dilate(region, 8)
    total = float(d.sum())
    far = d[:, ~near]
    worst = int(np.argmax(far.max(axis=1)))
    return {
        "near_mouth_share": round(float(d[:, near].sum()) / max(total, 1e-9), 3),
        "far_changed_pct": round(100 * float((far > 20).mean()), 4),
        "far_max": round(float(far.max()), 1),
    }, worst


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", required=True, help="NAME=WEIGHTS")
    ap.add_argument("--preset", default="toon-128")
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sheet", type=Path, default=None, help="folder for one PNG per model and clip")
    a = ap.parse_args()

    from flowact.config import load_preset
    from flowact.train.evaluate import heldout_clips, prompt_at, stream

    torch.set_num_threads(a.threads)
    p = load_preset(a.preset)
    models = {name: m for name, (m, _) in load_models(a.model, p).items()}
    rows: dict[str, list] = {n: [] for n in models}
    for i, clip in enumerate(heldout_clips(a.clips, a.seconds, p.video.width, p.video.height)):
        gt, region, _, _ = clip_truth(clip)
        n = len(gt)
        for name, m in models.items():
            lips, out = m.lips, {}
            for on in (True, False):
                m.lips = lips if on else None
                out[on] = stream(m, clip.reference(), clip.audio, lambda s: prompt_at(clip, s), n, seed=i)
            m.lips = lips
            fig, worst = spill(out[True], out[False], region)
            rows[name].append(fig)
            print(f"clip {i} {name}: {fig}", file=sys.stderr, flush=True)
            if a.sheet:
                from PIL import Image

                a.sheet.mkdir(parents=True, exist_ok=True)
                d = np.abs(out[True][worst].astype(np.int16) - out[False][worst].astype(np.int16)).max(-1)
                heat = np.repeat(np.clip(4 * d, 0, 255).astype(np.uint8)[..., None], 3, -1)
                row = np.concatenate([out[True][worst], out[False][worst], heat], axis=1)
                Image.fromarray(row).resize((row.shape[1] * 3, row.shape[0] * 3), Image.NEAREST).save(
                    a.sheet / f"{name}_clip{i}.png"
                )
    summary = {
        name: {k: round(float(np.mean([r[k] for r in rs])), 4) for k in rs[0]} | {"per_clip": rs}
        for name, rs in rows.items()
    }
    print(json.dumps({"conditions": vars(a) | {"sheet": str(a.sheet)}, "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
