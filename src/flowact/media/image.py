"""Load a reference picture (png/jpg/webp/..., any size, alpha or grayscale) at the preset's size.

Crop/fit policy (documented in `flowact render --help`):
- `cover` (default): scale so the picture covers the frame, crop the centre horizontally;
  vertically cut a third of the excess from the top and two thirds from the bottom (a
  portrait's face sits in its upper half);
- `contain`: scale to fit inside the frame and pad with the picture's mean border colour.
Transparent pixels are composited over mid grey; grayscale becomes RGB. A camera's EXIF orientation is
applied (a phone's portrait shot stands upright); 16-bit and float pictures keep their brightness (scaled to
8 bits, not clipped); CMYK and palette pictures become RGB.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import FlowactError

FIT_MODES = ("cover", "contain")
MIN_SIDE = 16


def _read(path: str | Path):
    """The picture at `path` as an RGB PIL image, validated (one-line errors naming the file)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise FlowactError("image file not found", path=path)
    if not path.is_file():
        raise FlowactError("image path is not a file", path=path)
    try:
        with Image.open(path) as im:
            im.load()
            img = im.copy()
    except UnidentifiedImageError as exc:
        raise FlowactError("not a readable image (unknown or corrupt format)", path=path) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise FlowactError(f"cannot read image ({exc})", path=path) from exc
    img = _upright(img)
    if min(img.size) < MIN_SIDE:
        raise FlowactError(
            f"image is too small ({img.size[0]}x{img.size[1]}; need at least {MIN_SIDE} px a side)", path=path
        )
    img = _eight_bit(img)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (128, 128, 128, 255))
        img = Image.alpha_composite(bg, rgba)
    return img.convert("RGB")


def _upright(img):
    """The picture as a person sees it: phones store a portrait shot sideways with an EXIF orientation tag."""
    from PIL import ImageOps

    try:
        return ImageOps.exif_transpose(img)
    except (OSError, ValueError, TypeError, KeyError):  # a damaged EXIF block: the pixels as stored
        return img


def _eight_bit(img):
    """Single-channel pictures of more than 8 bits (16-bit PNG/TIFF open as I;16 or I, float TIFF as F) scaled
    to 0..255 by their bit depth (PIL's own conversion clips them to white, or float 0..1 to black)."""
    from PIL import Image

    if img.mode not in ("I", "F") and not img.mode.startswith("I;16"):
        return img
    a = np.asarray(img, dtype=np.float64)
    top = float(a.max()) if a.size else 0.0
    if img.mode == "F":
        scale = 255.0 if top <= 1.0 else 255.0 / max(top, 255.0)
    else:
        scale = 1.0 if top <= 255 else 255.0 / 65535.0 if top <= 65535 else 255.0 / top
    return Image.fromarray(np.clip(np.rint(a * scale), 0, 255).astype(np.uint8), "L")


def read_image(path: str | Path) -> np.ndarray:
    """The picture at its own size, uint8 (height, width, 3)."""
    return np.asarray(_read(path), dtype=np.uint8)


def fit_within(path: str | Path, width: int, height: int, min_side: int = 0) -> np.ndarray:
    """The picture at its own framing, scaled down to fit width x height, sides even (H.264 needs
    them): uint8 (height', width', 3). The photo route keeps the user's framing. Scaled up only where
    its shorter side is under `min_side` (a tiny crop still makes a video a person can watch), and
    then no further than width x height allows."""
    from PIL import Image

    img = _read(path)
    sw, sh = img.size
    s = max(min(1.0, width / sw, height / sh), min(min_side / min(sw, sh), width / sw, height / sh))
    nw, nh = max(MIN_SIDE, int(sw * s) // 2 * 2), max(MIN_SIDE, int(sh * s) // 2 * 2)
    if (nw, nh) != (sw, sh):
        img = img.resize((nw, nh), Image.Resampling.LANCZOS)
    return np.asarray(img, dtype=np.uint8)


def load_image(path: str | Path, width: int, height: int, fit: str = "cover") -> np.ndarray:
    """Returns uint8 (height, width, 3)."""
    from PIL import Image

    if fit not in FIT_MODES:
        raise FlowactError(f"unknown fit mode {fit!r}; expected one of {', '.join(FIT_MODES)}")
    img = _read(path)
    sw, sh = img.size
    if fit == "cover":
        s = max(width / sw, height / sh)
        nw, nh = max(width, round(sw * s)), max(height, round(sh * s))
        img = img.resize((nw, nh), Image.Resampling.LANCZOS)
        left = (nw - width) // 2
        top = (nh - height) // 3  # keep the upper part: faces sit high in portraits
        img = img.crop((left, top, left + width, top + height))
        return np.asarray(img, dtype=np.uint8)
    s = min(width / sw, height / sh)
    nw, nh = max(1, round(sw * s)), max(1, round(sh * s))
    small = img.resize((nw, nh), Image.Resampling.LANCZOS)
    arr = np.asarray(img, dtype=np.float32)
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]]).mean(0)
    canvas = Image.new("RGB", (width, height), tuple(int(c) for c in border))
    canvas.paste(small, ((width - nw) // 2, (height - nh) // 2))
    return np.asarray(canvas, dtype=np.uint8)
