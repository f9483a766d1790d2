"""A frame sheet of the photo route's mouth: real portraits (matplotlib's grace_hopper.jpg, closed mouth;
scikit-image's astronaut.png, a smile with teeth) at rest, mid-syllable and wide open, each a 512 px
frame's mouth crop enlarged 2x, with the face beside it at its own scale.

    python scripts/photo_sheet.py runs/sheet_after.png
    PYTHONPATH=/path/to/older/checkout/src python scripts/photo_sheet.py runs/sheet_before.png
    python scripts/photo_sheet.py --stack docs/photo-mouth.jpg runs/sheet_before.png runs/sheet_after.png
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

POSES = {"rest": {}, "mid-syllable": {"open": 0.35}, "wide open": {"open": 0.85, "teeth": 0.3}}


def portraits() -> dict[str, Path]:
    import matplotlib
    import skimage

    return {
        "grace_hopper.jpg (closed mouth)": Path(matplotlib.__file__).parent / "mpl-data/sample_data/grace_hopper.jpg",
        "astronaut.png (smile, teeth)": Path(skimage.__file__).parent / "data/astronaut.png",
    }


def sheet(out: Path) -> None:
    from flowact.photo import face as F
    from flowact.photo.rig import build_rig
    from flowact.world.motion_vector import index, neutral_vector

    ref = neutral_vector()
    motion = []
    for p in POSES.values():
        m = ref.copy()
        for k, v in p.items():
            m[index(f"mouth_{k}")] = v
        motion.append(m)
    rows = []
    for name, path in portraits().items():
        rig = build_rig(path, 512)
        frames = rig.render(np.stack(motion), ref)
        lips = rig.mesh.points[list(F.LIPS_OUTER), :2]
        (cx, cy), iod = lips.mean(0), rig.mesh.inter_ocular
        box = (int(cx - 0.75 * iod), int(cy - 0.45 * iod), int(cx + 0.75 * iod), int(cy + 0.75 * iod))
        tiles = [Image.fromarray(f).crop(box).resize((240, 192), Image.Resampling.LANCZOS) for f in frames]
        rows.append((name, tiles))
    img = Image.new("RGB", (240 * len(POSES), (192 + 16) * len(rows)), "white")
    d = ImageDraw.Draw(img)
    for j, (name, tiles) in enumerate(rows):
        for i, (t, pose) in enumerate(zip(tiles, POSES)):
            img.paste(t, (240 * i, j * 208 + 16))
            d.text((240 * i + 4, j * 208 + 2), f"{name}: {pose}", fill="black")
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out)


def stack(out: Path, before: Path, after: Path) -> None:
    a, b = Image.open(before), Image.open(after)
    img = Image.new("RGB", (a.width + b.width + 12, max(a.height, b.height) + 18), "white")
    d = ImageDraw.Draw(img)
    d.text((4, 2), "before", fill="black")
    d.text((a.width + 16, 2), "after", fill="black")
    img.paste(a, (0, 18))
    img.paste(b, (a.width + 12, 18))
    img.save(out, quality=82)


if __name__ == "__main__":
    if sys.argv[1] == "--stack":
        stack(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
    else:
        sheet(Path(sys.argv[1]))
