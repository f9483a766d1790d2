"""Drawing primitives: shapes in character units, drawn supersampled with PIL, then box-downsampled.

Character units: frame height = 1, x measured from the character's centre line, y down.
`Canvas` maps them to supersampled pixels (the character's scale and offset included);
a second transform (rotation about a pivot) places the head's local shapes.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

RGB = tuple[int, int, int]


def supersampling(height: int) -> int:
    """Supersampling factor: more for small frames, where anti-aliasing matters most per pixel."""
    return 3 if height <= 200 else 2 if height <= 600 else 1


def ellipse(
    cx: float,
    cy: float,
    rx: float,
    ry: float,
    n: int = 28,
    power: float = 2.0,
    start: float = 0.0,
    stop: float = 2 * np.pi,
) -> np.ndarray:
    """(n, 2) points of a superellipse (power 2: an ellipse; larger: squarer)."""
    a = np.linspace(start, stop, n, endpoint=stop - start < 2 * np.pi - 1e-9)
    c, s = np.cos(a), np.sin(a)
    e = 2.0 / power
    return np.stack([cx + rx * np.sign(c) * np.abs(c) ** e, cy + ry * np.sign(s) * np.abs(s) ** e], 1)


def capsule(p0, p1, r0: float, r1: float, n: int = 8) -> np.ndarray:
    """Polygon of a limb segment: round caps of radius r0 at p0 and r1 at p1."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    d = p1 - p0
    ang = np.arctan2(d[1], d[0])
    a1 = np.linspace(ang - np.pi / 2, ang + np.pi / 2, n)
    a0 = np.linspace(ang + np.pi / 2, ang + 3 * np.pi / 2, n)
    return np.concatenate(
        [p1 + r1 * np.stack([np.cos(a1), np.sin(a1)], 1), p0 + r0 * np.stack([np.cos(a0), np.sin(a0)], 1)]
    )


def clip_convex(subject: np.ndarray, clip: np.ndarray) -> np.ndarray:
    """Sutherland-Hodgman: the part of polygon `subject` inside convex polygon `clip`."""
    out = subject
    area = np.sum(clip[:, 0] * np.roll(clip[:, 1], -1) - np.roll(clip[:, 0], -1) * clip[:, 1])
    sign = 1.0 if area > 0 else -1.0
    for i in range(len(clip)):
        a, b = clip[i], clip[(i + 1) % len(clip)]
        if len(out) == 0:
            break
        side = sign * ((b[0] - a[0]) * (out[:, 1] - a[1]) - (b[1] - a[1]) * (out[:, 0] - a[0]))
        new = []
        for j in range(len(out)):
            p, q = out[j], out[(j + 1) % len(out)]
            sp, sq = side[j], side[(j + 1) % len(out)]
            if sp >= 0:
                new.append(p)
            if (sp >= 0) != (sq >= 0):
                new.append(p + (q - p) * (sp / (sp - sq)))
        out = np.array(new) if new else np.zeros((0, 2))
    return out


def shade(c: RGB, k: float) -> RGB:
    """Darker (k < 1) or lighter (k > 1) version of a colour."""
    if k <= 1:
        return tuple(int(x * k) for x in c)  # type: ignore[return-value]
    return tuple(int(x + (255 - x) * (k - 1)) for x in c)  # type: ignore[return-value]


class Canvas:
    """One supersampled frame. Shapes are given in character units."""

    def __init__(
        self,
        background: Image.Image,
        width: int,
        height: int,
        ss: int,
        scale: float,
        x_offset: float,
        outline: RGB | None,
        line_width: float,
    ):
        self.img = background.copy()
        self.draw = ImageDraw.Draw(self.img)
        self.W, self.H, self.ss = width, height, ss
        self.k = height * ss * scale
        self.x0 = ss * (width / 2 + height * x_offset)
        self.y0 = ss * height * (1 - scale)  # the character is scaled about the bottom of the frame
        self.outline = outline
        self.lw = max(1, int(round(line_width * height * ss)))
        self.rot = None  # (pivot (2,), cos, sin) for head-local shapes

    def to_px(self, pts: np.ndarray) -> list[tuple[float, float]]:
        pts = np.asarray(pts, float).reshape(-1, 2)
        if self.rot is not None:
            (px, py), c, s = self.rot
            x, y = pts[:, 0] - px, pts[:, 1] - py
            pts = np.stack([px + c * x - s * y, py + s * x + c * y], 1)
        return list(zip((self.x0 + self.k * pts[:, 0]).tolist(), (self.y0 + self.k * pts[:, 1]).tolist()))

    def poly(self, pts: np.ndarray, fill: RGB | None, outline: bool = True) -> None:
        if len(pts) < 3:
            return
        xy = self.to_px(pts)
        if outline and self.outline is not None:
            self.draw.polygon(xy, fill=fill, outline=self.outline, width=self.lw)
        else:
            self.draw.polygon(xy, fill=fill)

    def line(self, pts: np.ndarray, colour: RGB, width: float) -> None:
        w = max(1, int(round(width * self.k)))
        self.draw.line(self.to_px(pts), fill=colour, width=w, joint="curve")

    def dot(self, cx: float, cy: float, r: float, fill: RGB) -> None:
        ((x, y),) = self.to_px(np.array([[cx, cy]]))
        rr = max(0.5, r * self.k)
        self.draw.ellipse([x - rr, y - rr, x + rr, y + rr], fill=fill)

    def finish(self) -> np.ndarray:
        img = self.img.reduce(self.ss) if self.ss > 1 else self.img
        return np.asarray(img, dtype=np.uint8)


def background(
    kind: str, c1: RGB, c2: RGB, accent: RGB, width: int, height: int, ss: int, rng: np.random.Generator
) -> Image.Image:
    """The static scene behind a character, at supersampled size."""
    W, H = width * ss, height * ss
    a, b = np.array(c1, float), np.array(c2, float)
    if kind == "vgradient":
        f = np.linspace(0, 1, H)[:, None, None]
        arr = np.broadcast_to(a * (1 - f) + b * f, (H, W, 3))
    elif kind == "radial":
        yy, xx = np.mgrid[0:H, 0:W]
        r = np.hypot((xx - W / 2) / H, (yy - H * 0.4) / H)[..., None]
        f = np.clip(r / 0.75, 0, 1)
        arr = a * (1 - f) + b * f
    elif kind == "stripes":
        period = H * rng.uniform(0.06, 0.14)
        xx = np.arange(W)[None, :, None]
        f = ((xx // period) % 2) * 0.35
        arr = np.broadcast_to(a * (1 - f) + b * f, (H, W, 3))
    else:
        arr = np.broadcast_to(a, (H, W, 3))
    img = Image.fromarray(np.ascontiguousarray(arr, dtype=np.float32).clip(0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    if kind == "room":
        floor = int(H * rng.uniform(0.72, 0.85))
        d.rectangle([0, floor, W, H], fill=shade(c2, 0.7))
        wx = W * rng.uniform(0.05, 0.2) if rng.random() < 0.5 else W * rng.uniform(0.62, 0.78)
        wy, ww, wh = H * rng.uniform(0.08, 0.2), H * rng.uniform(0.2, 0.3), H * rng.uniform(0.25, 0.35)
        d.rectangle([wx, wy, wx + ww, wy + wh], fill=(180, 215, 240), outline=shade(c1, 0.5), width=max(1, ss * 2))
        d.line([wx + ww / 2, wy, wx + ww / 2, wy + wh], fill=shade(c1, 0.5), width=max(1, ss * 2))
        px = W - wx - ww * 0.8
        d.rectangle([px, H * 0.15, px + H * 0.16, H * 0.3], fill=accent, outline=(60, 45, 30), width=max(1, ss * 2))
        pot = W * rng.uniform(0.02, 0.12)
        d.ellipse([pot - H * 0.04, floor - H * 0.2, pot + H * 0.1, floor - H * 0.04], fill=(60, 140, 70))
        d.rectangle([pot, floor - H * 0.07, pot + H * 0.06, floor], fill=(150, 80, 50))
    elif kind == "sky":
        sx, sy, sr = W * rng.uniform(0.1, 0.9), H * rng.uniform(0.08, 0.25), H * rng.uniform(0.04, 0.08)
        d.ellipse([sx - sr, sy - sr, sx + sr, sy + sr], fill=(255, 230, 120))
        for _ in range(3):
            hx, hr = W * rng.uniform(-0.2, 1.2), H * rng.uniform(0.4, 0.9)
            d.ellipse([hx - hr * 1.5, H * 0.75 - hr * 0.35, hx + hr * 1.5, H * 0.75 + hr], fill=shade(accent, 0.6))
    return img
