"""The inside of the mouth: what a warp cannot invent when the lips part.

Between the moved inner-lip contours the warp only stretches the lips' own pixels, so the
opening is painted over them: a dark cavity, the upper teeth as a light band hanging from the
upper lip, a tongue hint at the bottom. The paint fades in with how much wider the gap is than
in the photo (a photo that already shows teeth keeps them at rest) and its edges are feathered
by a pixel and a half, so no seam shows. All of it lives in a small fixed box around the mouth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import face as F


def _smooth(t: torch.Tensor) -> torch.Tensor:
    t = t.clamp(0.0, 1.0)
    return t * t * (3 - 2 * t)


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """np.interp for increasing xp (clamped at the ends), vectorised over x."""
    i = torch.searchsorted(xp, x).clamp(1, len(xp) - 1)
    x0, x1 = xp[i - 1], xp[i]
    t = ((x - x0) / (x1 - x0).clamp_min(1e-6)).clamp(0, 1)
    return fp[i - 1] + t * (fp[i] - fp[i - 1])


@dataclass(frozen=True)
class MouthPainter:
    """box: (y0, y1, x0, x1) output pixels; upper/lower: vertex indices of the inner-lip contours
    (corner to corner); rest_gap: (x1 - x0,) the photo's own lip gap per column; colours 0..255."""

    box: tuple[int, int, int, int]
    upper: np.ndarray
    lower: np.ndarray
    rest_gap: torch.Tensor  # (11,) the photo's own gap at each upper/lower inner-lip pair
    iod: float
    teeth: torch.Tensor
    cavity: torch.Tensor
    tongue: torch.Tensor

    @classmethod
    def build(cls, image: np.ndarray, verts: np.ndarray, iod: float) -> MouthPainter:
        """image: (H, W, 3) uint8 output-sized photo; verts: (V, 2) rig vertices at rest."""
        h, w = image.shape[:2]
        up, lo = np.array(F.LIPS_INNER_UPPER), np.array(F.LIPS_INNER_LOWER)
        lips = verts[list(F.LIPS_OUTER)]
        x0 = int(max(0, lips[:, 0].min() - 0.5 * iod))
        x1 = int(min(w, lips[:, 0].max() + 0.5 * iod + 1))
        y0 = int(max(0, lips[:, 1].min() - 0.3 * iod))
        y1 = int(min(h, lips[:, 1].max() + 0.8 * iod + 1))
        xs = torch.arange(x0, x1, dtype=torch.float32)
        yu, yl = _contours(torch.from_numpy(verts[up]), torch.from_numpy(verts[lo]), xs)
        rest_gap = torch.from_numpy(np.clip(verts[lo, 1] - verts[up, 1], 0, None)).float()
        # colours from the photo: teeth from its own bright mouth pixels if it shows them, else
        # brightened skin; the cavity is the lip colour darkened
        yy, xx = np.mgrid[y0:y1, x0:x1]
        inside = (yy >= yu.numpy()[None] + 1) & (yy <= yl.numpy()[None] - 1)
        pix = image[y0:y1, x0:x1][inside].astype(np.float32)
        skin = image[int(verts[F.NOSE_TIP, 1]), int(verts[F.NOSE_TIP, 0])].astype(np.float32)
        lip = image[
            verts[list(F.LIPS_OUTER_LOWER[3:-3]), 1].astype(int), verts[list(F.LIPS_OUTER_LOWER[3:-3]), 0].astype(int)
        ]
        lip = lip.astype(np.float32).mean(0)
        teeth = 0.35 * skin + 0.65 * np.array([222, 214, 200], np.float32)
        if len(pix) > 20:
            lum = pix.mean(1)
            bright = pix[lum >= np.percentile(lum, 70)].mean(0)
            if bright.mean() > 130 and bright.max() - bright.min() < 60:
                teeth = 0.6 * bright + 0.4 * teeth
        cavity = 0.3 * lip + np.array([12, 3, 4], np.float32)
        tongue = 0.5 * lip + np.array([18, 2, 6], np.float32)
        t = lambda c: torch.tensor(c, dtype=torch.float32).view(3, 1, 1)  # noqa: E731
        return cls((y0, y1, x0, x1), up, lo, rest_gap, float(iod), t(teeth), t(cavity), t(tongue))

    def paint(self, frame: torch.Tensor, verts: torch.Tensor, teeth_amount: float) -> None:
        """frame: (3, H, W) float 0..255, painted in place; verts: (V, 2) the moved vertices."""
        y0, y1, x0, x1 = self.box
        xs = torch.arange(x0, x1, dtype=torch.float32)
        ys = torch.arange(y0, y1, dtype=torch.float32)[:, None]
        yu, yl = _contours(verts[self.upper], verts[self.lower], xs)
        gap = (yl - yu).clamp_min(0)
        # how much wider each lip pair is than in the photo, along the moved mouth (turn-invariant)
        pair = (verts[self.lower, 1] - verts[self.upper, 1]).clamp_min(0) - self.rest_gap
        if float(pair.max()) <= 0.5:
            return
        ux = verts[self.upper, 0]
        o = torch.argsort(ux)
        grown = _smooth((_interp(xs, ux[o].contiguous(), pair[o]) - 0.5) / (0.06 * self.iod))  # (x,)
        # the photo's own opening (teeth it shows at rest) stays: it hangs from the upper lip as the
        # upper teeth do, and the cavity opens below it
        ux_sorted = ux[o].contiguous()
        own = _interp(xs, ux_sorted, self.rest_gap[o]).clamp(min=0)
        top = yu + 0.9 * own
        gap = (yl - top).clamp_min(0)
        fe = 1.5
        inside = _smooth((ys - top) / fe + 0.5) * _smooth((yl - ys) / fe + 0.5)
        xc = 0.5 * (verts[self.upper[0], 0] + verts[self.upper[-1], 0])
        half = 0.5 * (verts[self.upper[-1], 0] - verts[self.upper[0], 0]).abs().clamp_min(1.0)
        across = (xs - xc) / half  # -1..1 corner to corner
        # the corners stay lips: a thin gap there shows as specks if painted
        alpha = inside * grown * _smooth((1 - across.abs()) * 5)  # (y, x)
        # upper teeth: a band under the upper lip, narrower than the mouth, shadowed at the top
        th = (0.3 * gap).clamp(max=0.11 * self.iod) * (1 + 0.6 * teeth_amount) + 1.0
        th = th * (1 - _smooth(own / (0.06 * self.iod)))  # painted teeth only where the photo shows none
        band = _smooth((top + th - ys) / 1.5 + 0.5) * _smooth((0.8 - across.abs()) * 4)
        shade = (0.62 + 0.3 * _smooth((ys - top) / 3.0)) * (1 - 0.25 * across.abs() ** 2)
        # tongue: a low ellipse resting on the lower lip
        ty = yl - 0.18 * gap
        r2 = (across / 0.6) ** 2 + ((ys - ty) / (0.3 * gap + 1e-3)) ** 2
        tongue = 0.6 * _smooth((1 - r2) * 2) * _smooth((gap - 0.2 * self.iod) / (0.12 * self.iod))
        # the cavity: darkest behind the teeth and at the sides, a little light at the back
        depth = _smooth((ys - top) / (gap + 1e-3))
        col = self.cavity * (0.55 + 0.45 * (1 - across.abs() ** 2)) * (0.7 + 0.3 * depth)
        col = col + (self.tongue - col) * tongue
        col = col + (self.teeth * shade - col) * band
        roi = frame[:, y0:y1, x0:x1]
        roi += (col - roi) * alpha


def _contours(up: torch.Tensor, lo: torch.Tensor, xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """y of the upper and lower inner-lip curves at columns xs; outside the corners both meet."""
    ou, ol = torch.argsort(up[:, 0]), torch.argsort(lo[:, 0])
    yu = _interp(xs, up[ou, 0].contiguous(), up[ou, 1])
    yl = _interp(xs, lo[ol, 0].contiguous(), lo[ol, 1])
    out = (xs < torch.minimum(up[:, 0].min(), lo[:, 0].min())) | (xs > torch.maximum(up[:, 0].max(), lo[:, 0].max()))
    yl = torch.where(out, yu, yl)
    return yu, yl
