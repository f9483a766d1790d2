"""Which route a reference picture takes: a photograph goes to the photo route (`photo-512`: a
motion engine moves the photo's own pixels), a drawn world-style character to the toon route
(`toon-128`: the video model draws every frame). `--preset NAME` forces one.

A drawn character is flat colour: most pixels equal their neighbours. A photograph (camera
noise, skin texture, JPEG) almost never has that. Measured on the shipped examples and
scikit-image's photos: drawn characters 0.86-0.91 (0.69 as a JPEG at quality 80), portraits
and animal photos 0.16-0.19.

It is measured on the picture as a person sees it, at most 512 px a side (a 4000x3000 photo or one
scaled up is smooth pixel to pixel: 0.81 at its own size, 0.42 at 512). A dark or low-key photo's
noise lies in fewer levels (a low-key portrait: 0.61, a darkened one 0.50), so a picture between 0.5
and 0.65 is drawn only if it stays flat once stretched to its own range of brightness (the low-key
portrait then reads 0.44). Stretching alone is no rule: a drawn character's soft shading, in a
narrow range of brightness, breaks into steps (a world character: 0.88 as it is, 0.42 stretched).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config import DEFAULT_PRESET

AUTO = "auto"
PHOTO_PRESET = "photo-512"
FLAT_SHARE_DRAWN = 0.5  # at or above (and flat when stretched too, below FLAT_SHARE_SURE): drawn
FLAT_SHARE_SURE = 0.65  # at or above: drawn, whatever its brightness range


SIDE = 512  # the scale at which flatness is judged


def flat_share(image: np.ndarray, stretched: bool = False) -> float:
    """Share of pixels (uint8 (height, width, 3)) within 2 levels of their right and lower neighbours, at
    most SIDE px a side; `stretched`: after stretching its 1st..99th percentile of brightness to 0..255."""
    a = _seen(image, stretched).astype(np.int16)
    right = np.abs(a[:-1, :-1] - a[:-1, 1:]).max(-1) <= 2
    down = np.abs(a[:-1, :-1] - a[1:, :-1]).max(-1) <= 2
    return float((right & down).mean())


def _seen(image: np.ndarray, stretched: bool) -> np.ndarray:
    from PIL import Image

    h, w = image.shape[:2]
    if max(h, w) > SIDE:
        s = SIDE / max(h, w)
        small = Image.fromarray(image).resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BOX)
        image = np.asarray(small)
    if not stretched:
        return image
    x = image.astype(np.float32)
    lo, hi = np.percentile(x.mean(-1), (1, 99))
    if hi - lo < 1:
        return image
    return np.clip(np.rint((x - lo) * (255 / (hi - lo))), 0, 255).astype(np.uint8)


def drawn_share(image: np.ndarray) -> float:
    """The flat share the rule decides on: as seen, or (between the two bounds) the stretched one."""
    share = flat_share(image)
    if FLAT_SHARE_DRAWN <= share < FLAT_SHARE_SURE:
        return min(share, flat_share(image, stretched=True))
    return share


def looks_like_photo(image: np.ndarray) -> bool:
    return drawn_share(image) < FLAT_SHARE_DRAWN


def route_preset(preset: str, image: str | Path | None) -> tuple[str, str]:
    """The preset to use and why: `preset` itself unless it is "auto", else chosen by the picture."""
    if preset != AUTO:
        return preset, "--preset"
    if image is None or str(image) == "-":
        return DEFAULT_PRESET, "default"
    from ..media.image import read_image

    share = drawn_share(read_image(image))
    if share < FLAT_SHARE_DRAWN:
        return PHOTO_PRESET, f"auto: a photograph (flat share {share:.2f})"
    return DEFAULT_PRESET, f"auto: a drawn character (flat share {share:.2f})"
