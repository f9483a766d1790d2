"""The photo route's mouth read back from its pixels: do the rendered lips follow the speech's labels?

For held-out world clips (held-out characters and voices, their exact per-frame labels), the
photo is rendered twice per clip:
  - `labels`: driven by the clip's own labelled motion (what `flowact render --motion` does): the
    renderer alone;
  - `engine`: driven by the shipped motion engine from the clip's audio: the whole chain.
Each frame is read back with the face mesh (tracked, photo/measure.py) and four numbers are taken,
lengths in the frame's inter-ocular distances, similarity removed:
  open   the inner-lip gap (mean of three pairs at the middle of the mouth)
  width  the distance between the mouth corners
  round  the outer lips' height over the corners' distance (a rounder, narrower outline)
  closed minus the lips' own thickness at the middle (outer height - inner gap): pressed lips thin
The table gives the pooled Pearson r of each against its label (mouth_open, _width, _round,
_closed) at lag 0 over all frames of all clips, and for width, round and closed also the partial r
with the opening held out (both sides' linear part in the labelled mouth_open removed): the face
model's corners and lip outline move with the jaw, which swamps the smaller lip shapes in plain r.

    python scripts/eval_photo_mouth.py [--clips 6] [--seconds 8] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from flowact.photo.measure import _normalised, track_meshes
from flowact.photo.rig import build_rig
from flowact.stream.motion import MotionEngine, generate
from flowact.world.clip import clip_seed, make_clip, split_seed
from flowact.world.motion_vector import clip_motion, index, neutral_vector, reference_motion

KEYS = ("open", "width", "round", "closed")
PARTIAL = ("width", "round", "closed")


def portraits() -> dict[str, Path]:
    import mahotas
    import matplotlib
    import skimage

    return {
        "grace_hopper (closed mouth)": Path(matplotlib.__file__).parent / "mpl-data/sample_data/grace_hopper.jpg",
        "astronaut (smile, teeth)": Path(skimage.__file__).parent / "data/astronaut.png",
        "luispedro (stubble, turned)": Path(mahotas.__file__).parent / "demos/data/luispedro.jpg",
    }


def read_back(frames: np.ndarray, first) -> np.ndarray:
    """(frames, 4): open, width, round, closed as read from the pixels."""
    out = []
    for m in track_meshes(frames, first):
        q, _ = _normalised(m.points)
        gap = np.mean([np.linalg.norm(q[b] - q[a]) for a, b in ((13, 14), (82, 87), (312, 317))])
        corners = np.linalg.norm(q[291] - q[61])
        outer = np.linalg.norm(q[17] - q[0])
        out.append([gap, corners, outer / corners, -(outer - gap)])
    return np.array(out, np.float32)


def corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    d = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / d) if d > 0 else float("nan")


def residual(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """y less its least-squares line in x."""
    a = np.stack([x, np.ones_like(x)], 1)
    return y - a @ np.linalg.lstsq(a, y, rcond=None)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    engine = MotionEngine.load()  # the shipped weights
    clips = [
        make_clip(split_seed(clip_seed(777, i), "heldout"), args.seconds, 128, 128, split="heldout")
        for i in range(args.clips)
    ]
    labels = [clip_motion(c) for c in clips]
    driven = {"labels": labels}
    driven["engine"] = [generate(engine, c.audio, reference_motion(c), seed=i) for i, c in enumerate(clips)]
    cols = [index(f"mouth_{k}") for k in KEYS]
    ref = neutral_vector()
    report = {}
    for name, path in portraits().items():
        rig = build_rig(path, 512)
        for how, tracks in driven.items():
            got, want = [], []
            for motion, lab in zip(tracks, labels):
                got.append(read_back(rig.render(motion, ref), rig.mesh))
                want.append(lab[: len(motion), cols])
            g, w = np.concatenate(got), np.concatenate(want)
            r = {k: round(corr(g[:, j], w[:, j]), 3) for j, k in enumerate(KEYS)}
            for k in PARTIAL:
                j = KEYS.index(k)
                r[f"{k} (open out)"] = round(corr(residual(g[:, j], w[:, 0]), residual(w[:, j], w[:, 0])), 3)
            report[f"{name}, {how}"] = r
    frames = sum(len(x) for x in labels)
    print(f"held-out clips: {len(clips)} x {args.seconds:g} s ({frames} frames); pooled r at lag 0 vs the labels\n")
    cols = [*KEYS, *(f"{k} (open out)" for k in PARTIAL)]
    print("| portrait, driven by | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))
    for k, v in report.items():
        print(f"| {k} | " + " | ".join(f"{v[x]:.2f}" for x in cols) + " |")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
