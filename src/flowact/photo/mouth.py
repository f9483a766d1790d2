"""The inside of the mouth: what a warp cannot invent when the lips part.

Between the moved inner-lip contours the warp only stretches the lips' own pixels, so the
opening is drawn over them, back to front, each layer a smooth field over a small box around the
moved lips (no sprites, nothing pasted):

- the cavity: dark red-brown from the photo's own lip colour, lighter and pinker just inside the
  lips (the wet inner lip), darker with depth and towards the corners, in the upper lip's shadow;
- the tongue: a dome rising from the floor of the mouth once the jaw is open, lit at its tip and
  darker towards the back, with a faint middle groove;
- the lower teeth: their tips above the lower lip at wide openings and on teeth-showing sounds;
- the upper teeth: a row hanging from the upper lip, laid on a dental arch seen from the front
  (central incisors widest, the teeth behind them narrower, shorter and darker as the arch turns
  away), each tooth rounded, separated by a thin shadow, the gum showing between them only when
  the lip lifts high, shaded under the lip;
- a photo that shows its own teeth keeps them: they hang from the upper lip rigidly (moved with
  it, never stretched) and the new opening starts below them.

Colours come from the photo at the mouth's scale: the lips give the cavity and the tongue, the
whites of the eyes give the teeth (so the photo's white balance carries over; a grayscale photo
stays gray), and the photo's own grain (a robust estimate of its noise near the mouth) is added,
so the paint is neither cleaner nor sharper than the pixels around it. Zero motion paints nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as tF

from . import face as F

# the upper dental arch seen from the front, in inter-ocular distances (an adult's incisor is ~8.5 mm
# wide, the eyes' centres ~63 mm apart): widths along the arch from the middle outwards, their
# lengths relative to a central incisor, the arch's radius
UPPER_TEETH = np.array([0.135, 0.105, 0.12, 0.11, 0.11, 0.12], np.float32)
UPPER_LENGTH = np.array([1.0, 0.86, 0.94, 0.8, 0.72, 0.65], np.float32)
LOWER_TEETH = np.array([0.085, 0.09, 0.11, 0.11], np.float32)
ARCH_RADIUS = 0.45
CROWN = 0.17  # visible crown height of a central incisor
NOISE_TILE = 64


def _smooth(t: torch.Tensor) -> torch.Tensor:
    t = t.clamp(0.0, 1.0)
    return t * t * (3 - 2 * t)


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """np.interp for increasing xp (clamped at the ends), row by row: x (n, k), xp and fp (n, m)."""
    i = torch.searchsorted(xp, x.contiguous()).clamp(1, xp.shape[-1] - 1)
    x0, x1 = torch.gather(xp, -1, i - 1), torch.gather(xp, -1, i)
    f0, f1 = torch.gather(fp, -1, i - 1), torch.gather(fp, -1, i)
    t = ((x - x0) / (x1 - x0).clamp_min(1e-6)).clamp(0, 1)
    return f0 + t * (f1 - f0)


def _tint(base: np.ndarray, gains, saturation: float) -> np.ndarray:
    """base colour times per-channel gains, the gains' colour scaled by the photo's saturation (0: gray)."""
    g = np.asarray(gains, np.float32)
    return base * (g.mean() + saturation * (g - g.mean()))


def _teeth_edges(widths: np.ndarray) -> np.ndarray:
    """Arc-length boundaries of the teeth from the middle outwards: 0, w0, w0 + w1, ..."""
    return np.concatenate([[0.0], np.cumsum(widths)]).astype(np.float32)


@dataclass(frozen=True)
class MouthPainter:
    """upper/lower: vertex indices of the inner-lip contours (corner to corner); lip_up/lip_lo:
    the outer ones; rest: (V, 2) vertices at rest; rest_gap: (11,) the photo's own lip gap per
    inner-lip pair; own: (11,) how much of that gap shows the photo's own teeth (pixels); photo:
    (3, H, W) float32 the rest image (+0.5, as the rig's); colours (3, 1, 1) float 0..255; noise:
    (3, T, T) the photo's grain; feather: edge softness in pixels."""

    upper: np.ndarray
    lower: np.ndarray
    outer: np.ndarray
    rest: torch.Tensor
    rest_gap: torch.Tensor
    own: torch.Tensor
    photo: torch.Tensor
    iod: float
    teeth: torch.Tensor
    gum: torch.Tensor
    lip: torch.Tensor
    mucosa: torch.Tensor
    cavity: torch.Tensor
    tongue: torch.Tensor
    noise: torch.Tensor
    feather: float

    @classmethod
    def build(cls, image: np.ndarray, verts: np.ndarray, iod: float, photo: torch.Tensor) -> MouthPainter:
        """image: (H, W, 3) uint8 output-sized photo; verts: (V, 2) rig vertices at rest."""
        h, w = image.shape[:2]
        img = image.astype(np.float32)
        up, lo = np.array(F.LIPS_INNER_UPPER), np.array(F.LIPS_INNER_LOWER)
        rest_gap = np.clip(verts[lo, 1] - verts[up, 1], 0, None).astype(np.float32)

        # the lower lip's own colour: the middle of the band between its inner and outer contours
        ol = np.array(F.LIPS_OUTER_LOWER)
        lip = _band(img, verts[lo[3:-3]], verts[ol[3:-3]])
        lip = np.median(lip, 0) if len(lip) >= 8 else img[int(verts[ol[5], 1]), int(verts[ol[5], 0])]
        face = _band(img, verts[list(F.RIGHT_EYE_LOWER)] + [0, 0.3 * iod], verts[ol] + [0, 0.4 * iod])
        face = face if len(face) >= 8 else lip[None]
        # saturation of the face (a grayscale photo: 0), for how coloured the paint may be
        sat = float(np.clip((face.max(1) - face.min(1)).mean() / max(face.mean(), 1.0) / 0.25, 0.0, 1.0))

        # white under this photo's light: the whites of the eyes (bright, low-chroma pixels inside the
        # eye contours), else a light gray at the face's brightness in the photo's overall colour cast
        eyes = np.concatenate(
            [_band(img, verts[list(a)], verts[list(b)]) for a, b in
             ((F.RIGHT_EYE_UPPER, F.RIGHT_EYE_LOWER), (F.LEFT_EYE_UPPER, F.LEFT_EYE_LOWER))]
        )  # fmt: skip
        chroma = lambda p: (p.max(-1) - p.min(-1)) / np.maximum(p.max(-1), 1.0)  # noqa: E731
        sclera = eyes[(chroma(eyes) < 0.3) & (eyes.mean(1) >= np.percentile(eyes.mean(1), 50))] if len(eyes) else eyes
        if len(sclera) >= 6:
            white = np.median(sclera, 0) * 1.1
        else:
            cast = img.reshape(-1, 3).mean(0)
            cast = np.sqrt(cast / max(float(cast.mean()), 1.0))
            white = min(1.4 * float(np.median(face.mean(1))), 230.0) * cast
        # teeth: a warm off-white at the whites' level, in the face's own colour cast (a little of it)
        skin = np.median(face, 0)
        cast = (skin / max(float(skin.mean()), 1.0)) ** 0.25
        # as light as the whites, at least a little lighter than the skin, at most 215: a dark photo gets dim teeth
        level = float(np.clip(float(white.mean()), min(1.2 * float(skin.mean()), 175.0), 215.0))
        teeth = _tint(level * cast / float(cast.mean()), (1.0, 0.95, 0.84), sat)

        # the photo's own teeth: bright, low-chroma pixels inside its lip gap, per inner-lip pair
        own = np.zeros(len(up), np.float32)
        for k in range(1, len(up) - 1):
            y_a, y_b = verts[up[k], 1], verts[lo[k], 1]
            if y_b - y_a < 2.0:
                continue
            xk = int(round(0.5 * (verts[up[k], 0] + verts[lo[k], 0])))
            col = img[int(np.ceil(y_a)) : int(np.floor(y_b)) + 1, min(max(xk, 0), w - 1)]
            bright = (col.mean(1) > 0.55 * float(white.mean())) & (col.max(1) - col.min(1) < 0.35 * col.mean(1) + 12)
            if bright.mean() > 0.3:  # down to its lowest light row (lower teeth included)
                own[k] = min(float(np.nonzero(bright)[0][-1] + np.ceil(y_a) + 1 - y_a), float(y_b - y_a))

        # grain: a robust estimate of the photo's noise near the mouth, per channel
        box = _box(verts[list(F.LIPS_OUTER)], iod, w, h, 0.4)
        crop = torch.from_numpy(img[box[0] : box[1], box[2] : box[3]]).permute(2, 0, 1)[None]
        resid = (crop - tF.avg_pool2d(tF.pad(crop, (1, 1, 1, 1), mode="replicate"), 3, 1))[0].flatten(1)
        sigma = 0.7 * 1.4826 * (resid - resid.median(1, keepdim=True).values).abs().median(1).values
        gen = torch.Generator().manual_seed(7)
        noise = torch.randn(1, NOISE_TILE, NOISE_TILE, generator=gen) * sigma.clamp(0.3, 4.0).view(3, 1, 1)

        t = lambda c: torch.tensor(np.asarray(c, np.float32), dtype=torch.float32).view(3, 1, 1)  # noqa: E731
        return cls(
            upper=up,
            lower=lo,
            outer=np.array(F.LIPS_OUTER),
            rest=torch.from_numpy(np.asarray(verts[:, :2], np.float32)).clone(),
            rest_gap=torch.from_numpy(rest_gap),
            own=torch.from_numpy(own),
            photo=photo,
            iod=float(iod),
            teeth=t(teeth),
            gum=t(_tint(lip, (1.0, 0.78, 0.8), sat)),
            lip=t(lip),
            mucosa=t(_tint(lip, (0.78, 0.5, 0.52), sat)),
            cavity=t(_tint(lip, (0.3, 0.15, 0.15), sat)),
            tongue=t(_tint(lip, (0.92, 0.62, 0.64), sat)),
            noise=noise,
            feather=max(1.0, 0.018 * iod),
        )

    def region(self, verts: torch.Tensor) -> tuple[int, int, int, int]:
        """(y0, y1, x0, x1): the pixels `paint` may change for these moved vertices (n, V, 2)."""
        h, w = self.photo.shape[1:]
        return _box(verts[:, self.outer].reshape(-1, 2).numpy(), 0.0, w, h, 0.0, pad=2)

    def paint(self, frames: torch.Tensor, verts: torch.Tensor, delta: np.ndarray, origin=(0, 0)) -> bool:
        """frames: (n, 3, H, W) float 0..255, painted in place, its pixel (0, 0) at the frame's `origin`
        (y, x) (a part of the frame may be given); verts: (n, V, 2) the moved vertices;
        delta: (n, 16) motion minus the photo's pose (mouth open, width, round, closed, teeth first).
        All n frames are drawn at once over the union of their mouth boxes (per-frame tensor work
        is mostly call overhead at these sizes); a frame at rest is left exactly as it is. False when
        nothing was painted."""
        iod, fe = self.iod, self.feather
        n = len(frames)
        up, lo = verts[:, self.upper], verts[:, self.lower]  # (n, 11, 2)
        pair = (lo[..., 1] - up[..., 1]).clamp_min(0)
        lift = up - self.rest[self.upper]  # how the upper lip (and the teeth hanging from it) moved
        active = ((pair - self.rest_gap).abs().amax(1) > 0.3) | (lift.abs().amax((1, 2)) > 0.3)
        if not bool(active.any()):
            return False  # the photo's own mouth, as it is
        h, w = self.photo.shape[1:]
        oy, ox_ = origin
        y0, y1, x0, x1 = _box(verts[active][:, self.outer].reshape(-1, 2).numpy(), 0.0, w, h, 0.0, pad=2)
        y0, y1 = max(y0, oy), min(y1, oy + frames.shape[2])
        x0, x1 = max(x0, ox_), min(x1, ox_ + frames.shape[3])
        if y1 - y0 < 2 or x1 - x0 < 2:
            return False
        xs = torch.arange(x0, x1, dtype=torch.float32) + 0.5
        ys = (torch.arange(y0, y1, dtype=torch.float32) + 0.5).view(1, 1, -1, 1)
        col_ = lambda t: t.view(n, 1, 1, -1)  # noqa: E731  (n, columns) -> broadcast over rows
        one = lambda t: torch.as_tensor(t, dtype=torch.float32).view(n, 1, 1, 1)  # noqa: E731
        yu, yl = _contours(up, lo, xs)  # (n, columns)
        ox = torch.argsort(up[..., 0], 1)
        ux = torch.gather(up[..., 0], 1, ox).contiguous()
        at = lambda f: _interp(xs.expand(n, -1), ux, torch.gather(f, 1, ox))  # noqa: E731  per-vertex -> columns
        own = col_(at(self.own.expand(n, -1)))  # the photo's own teeth under the upper lip, per column
        rest_gap = col_(at(self.rest_gap.expand(n, -1)))
        yu, yl = col_(yu), col_(yl)
        gap = (yl - yu).clamp_min(0)
        grown = _smooth((gap - rest_gap - 0.3) / (0.05 * iod))  # the new opening fades in
        inside = _smooth((ys - yu) / fe + 0.5) * _smooth((yl - ys) / fe + 0.5)

        # the mouth's own frame: its middle (the arch's), half width, where each column is across it
        c0, c1 = verts[:, self.upper[0], 0], verts[:, self.upper[-1], 0]
        xc = one(0.5 * (c0 + c1))
        half = one((0.5 * (c1 - c0).abs()).clamp_min(1.0))
        across = ((xs.view(1, 1, 1, -1) - xc) / half).clamp(-1, 1)
        d = torch.from_numpy(np.asarray(delta, np.float32))
        d_open, d_teeth = one(d[:, 0].clamp_min(0)), one(d[:, 4].clamp_min(0))

        # cavity: wet inner lip at the edges, dark red-brown with depth, darker at the corners, the
        # upper lip's shadow over the top
        dtop, dbot = ys - yu, yl - ys
        depth = _smooth(torch.minimum(dtop, dbot) / (0.05 * iod + 0.25 * gap + 1e-3))
        col = self.mucosa + (self.cavity - self.mucosa) * depth
        col = col * (1 - 0.35 * across**2) * (0.55 + 0.45 * _smooth(dtop / (0.07 * iod)))

        # tongue: a dome on the floor of the mouth, visible once the jaw opens
        h_t = (0.42 * gap - 0.03 * iod).clamp(0, 0.12 * iod)
        top_t = yl - h_t * (1 - (across / 0.85) ** 2).clamp_min(0).sqrt()
        a_t = _smooth((ys - top_t) / fe + 0.5) * (h_t > 0.5).float()
        shade_t = (0.55 + 0.4 * _smooth((ys - top_t) / (h_t + 1e-3))) * (1 - 0.12 * torch.exp(-((across / 0.1) ** 2)))
        col = col + (self.tongue * shade_t * (1 - 0.3 * across**2) - col) * a_t

        # lower teeth: their tips above the lower lip (on teeth-showing sounds, and as the jaw opens wide)
        show = (0.03 * d_teeth + 0.02 * ((d_open - 0.4) / 0.4).clamp(0, 1)) * iod
        low, seam_l, _, len_l = self._arch(xs, xc, LOWER_TEETH, np.ones(len(LOWER_TEETH), np.float32))
        top_l = yl - show * len_l
        a_l = _smooth((ys - top_l) / fe + 0.5) * low * _smooth((0.55 - across.abs()) / 0.2)
        a_l = a_l * (show - 1.0).clamp(0, 1)  # under a pixel and a half they are not drawn
        shade_l = 0.75 * (1 - 0.3 * across**2)
        col = col + (self._shaded(shade_l) * (1 - 0.2 * seam_l) - col) * a_l

        # upper teeth: rigid under the upper lip, which lifts on open and teeth-showing sounds; the
        # incisal edge stays where the skull holds it: as far below the lip as the lip lifted (the
        # warp's fields), plus the little a relaxed lip shows
        expose = (0.035 + 0.05 * d_open + 0.06 * d_teeth) * iod
        on, seam, edge, length = self._arch(xs, xc, UPPER_TEETH, UPPER_LENGTH)
        bottom = yu + expose * length  # the incisal edge
        crown = bottom - CROWN * iod * length + 0.06 * iod * edge**3  # the gum between the teeth comes down
        a_u = _smooth((bottom - ys) / fe + 0.5) * on
        shade_u = (0.45 + 0.55 * _smooth(dtop / (0.06 * iod))) * (1 - 0.5 * across**2)
        shade_u = shade_u * (1 - 0.12 * _smooth((ys - bottom + 0.25 * expose * length) / (0.2 * expose + 1e-3)))
        tooth = self._shaded(shade_u) * (1 - 0.22 * seam)  # the shadow between two teeth: darker, not redder
        tooth = tooth + (self.gum * 0.8 - tooth) * _smooth((crown - ys) / fe + 0.5)
        proc = 1 - _smooth(own / (0.05 * iod))  # painted teeth only where the photo shows none
        col = col + (tooth - col) * (a_u * proc)

        # the photo's own teeth, carried rigidly by the upper lip (never stretched)
        alpha = inside * grown
        if float(self.own.max()) > 0.5:
            lift_x, lift_y = col_(at(lift[..., 0])), col_(at(lift[..., 1]))
            src_x = (xs.view(1, 1, 1, -1) - lift_x).expand(-1, -1, len(ys[0, 0]), -1)
            src_y = (ys - lift_y).expand(-1, -1, -1, len(xs))
            in_own = _smooth((yu - lift_y + own - src_y) / fe + 0.5) * _smooth(own / (0.05 * iod))
            grid = torch.stack([src_x[:, 0] / w * 2 - 1, src_y[:, 0] / h * 2 - 1], -1)
            photo = self.photo[None].expand(n, -1, -1, -1)
            mine = tF.grid_sample(photo, grid, mode="bilinear", padding_mode="border", align_corners=False)
            col = col + (mine - col) * in_own
            alpha = inside * torch.maximum(grown, in_own)
            # lips pressed together over the photo's teeth: they meet in a seam of lip colour (else
            # the teeth squeezed between them show as specks)
            closing = _smooth((rest_gap - gap) / (0.5 * rest_gap + 1.0)) * _smooth(own / (0.05 * iod))
            mid = 0.5 * (yu + yl)
            seal = torch.exp(-(((ys - mid) / (0.03 * iod + fe)) ** 2)) * closing
            lips = self.lip * (0.95 - 0.4 * torch.exp(-(((ys - mid) / 0.8) ** 2)))
            col = col + (lips - col) * (seal / torch.maximum(alpha, seal).clamp_min(1e-3))
            alpha = torch.maximum(alpha, seal)

        # the photo's grain over the paint, then into the frames (those at rest untouched)
        ty = torch.arange(y0, y1) % NOISE_TILE
        tx = torch.arange(x0, x1) % NOISE_TILE
        col = (col + self.noise[:, ty][:, :, tx]).clamp(0.5, 255.4)
        roi = frames[:, :, y0 - oy : y1 - oy, x0 - ox_ : x1 - ox_]
        roi += (col - roi) * (alpha * active.view(n, 1, 1, 1))
        return True

    def _shaded(self, light: torch.Tensor) -> torch.Tensor:
        """Teeth at a light level 0..1: shadow inside a mouth is the cavity's red-brown, not gray."""
        return self.teeth * light + 0.8 * self.mucosa * (1 - light)

    def _arch(self, xs: torch.Tensor, xc: torch.Tensor, widths: np.ndarray, lengths: np.ndarray):
        """Teeth on a dental arch seen from the front, at columns xs around its middle xc. Returns
        (on: 1 on a tooth, fading where the arch turns away; seam: the shadow between two teeth, ~1 px
        wide, and a tooth's roundness; edge: 0 in a tooth's middle, 1 at its sides; length: the
        tooth's length relative to a central incisor, its corners rounded)."""
        r = ARCH_RADIUS * self.iod
        u = ((xs.view(1, 1, 1, -1) - xc) / r).clamp(-0.999, 0.999)  # (n, 1, 1, columns)
        theta = torch.asin(u)
        s = (theta * r).abs() / self.iod  # along the arch from the middle, in IODs
        edges = torch.from_numpy(_teeth_edges(widths))
        j = (torch.searchsorted(edges, s.contiguous()) - 1).clamp(0, len(widths) - 1)
        a, b = edges[j], edges[j + 1]
        f = ((s - a) / (b - a)).clamp(0, 1)
        px = torch.minimum(f, 1 - f) * (b - a) * self.iod * torch.cos(theta)  # to the nearest seam, in pixels
        edge = 1 - torch.sin(torch.pi * f)
        seam = 0.6 * torch.exp(-((px / 0.55) ** 2)) + 0.4 * edge**2
        seam = seam * min(max((0.135 * self.iod - 2.5) / 3.0, 0.0), 1.0)  # teeth under ~3 px wide: no dots
        length = torch.from_numpy(lengths)[j] * (1 - 0.22 * edge**3)
        on = _smooth((float(edges[-1]) - s) / 0.05) * _smooth((1 - u.abs()) / 0.15)
        return on, seam, edge, length


def find_parting(image: np.ndarray, points: np.ndarray, iod: float) -> np.ndarray:
    """A closed mouth's inner-lip contours moved onto the photo's own parting line.

    The face model's inner-lip points of a closed mouth often sit a pixel or two above or below
    the dark line where the lips meet; the warp would then carry a strip of upper lip down with
    the jaw (and paint over the rest of it). For a mouth closed in the photo (every inner-lip gap
    under 2 px), per pair the darkest row within 0.06 IOD (luminance, 3 columns averaged) is
    found where it is clearly darker than the lips around it, and the whole inner line moves by
    the median of those offsets (less towards the corners). points: (468, 3) mesh in the image's
    pixels; returns a copy."""
    out = np.array(points, np.float32, copy=True)
    h, w = image.shape[:2]
    lum = image.astype(np.float32).mean(2)
    up, lo = F.LIPS_INNER_UPPER, F.LIPS_INNER_LOWER
    r = max(2, int(round(0.06 * iod)))
    found = []
    for k in range(2, len(up) - 2):
        a, b = out[up[k]], out[lo[k]]
        if b[1] - a[1] >= 2.0:
            return out  # lips apart in the photo: its contours are the opening's
        x, yc = int(round(0.5 * (a[0] + b[0]))), int(round(0.5 * (a[1] + b[1])))
        if not (1 <= x < w - 1 and r <= yc < h - r):
            continue
        prof = lum[yc - r : yc + r + 1, x - 1 : x + 2].mean(1)
        i = int(np.argmin(prof))
        if prof[i] < 0.85 * float(np.median(prof)) and 0 < i < len(prof) - 1:
            found.append(yc - r + i + 0.5 - 0.5 * (a[1] + b[1]))
    if len(found) < 3:
        return out
    # one shift for the whole line (per-column minima follow wrinkles), fading out towards the corners
    shift = float(np.median(found))
    xs = out[list(up), 0]
    mid, half = 0.5 * (xs[0] + xs[-1]), max(0.5 * abs(xs[-1] - xs[0]), 1.0)
    for k in range(1, len(up) - 1):
        fade = float(np.clip(1.0 - ((out[up[k], 0] - mid) / half) ** 2, 0.0, 1.0)) ** 0.5
        out[up[k], 1] += shift * fade
        out[lo[k], 1] += shift * fade
    return out


def _box(points: np.ndarray, iod: float, w: int, h: int, margin: float, pad: int = 0) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) around points, `margin` IODs (and `pad` pixels) out, clipped to the frame."""
    m = margin * iod + pad
    x0 = int(max(0, np.floor(points[:, 0].min() - m)))
    x1 = int(min(w, np.ceil(points[:, 0].max() + m) + 1))
    y0 = int(max(0, np.floor(points[:, 1].min() - m)))
    y1 = int(min(h, np.ceil(points[:, 1].max() + m) + 1))
    return y0, y1, x0, x1


def _band(img: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pixels between two polylines (a above b, both left to right), as (n, 3)."""
    h, w = img.shape[:2]
    xs = np.arange(int(max(0, min(a[:, 0].min(), b[:, 0].min()))), int(min(w, max(a[:, 0].max(), b[:, 0].max()) + 1)))
    if len(xs) == 0:
        return np.zeros((0, 3), np.float32)
    oa, ob = np.argsort(a[:, 0]), np.argsort(b[:, 0])
    ya = np.interp(xs + 0.5, a[oa, 0], a[oa, 1])
    yb = np.interp(xs + 0.5, b[ob, 0], b[ob, 1])
    lo_x = max(a[:, 0].min(), b[:, 0].min())
    hi_x = min(a[:, 0].max(), b[:, 0].max())
    yy = np.arange(h)[:, None] + 0.5
    m = (yy > np.minimum(ya, yb) + 0.5) & (yy < np.maximum(ya, yb) - 0.5) & ((xs >= lo_x) & (xs <= hi_x))[None]
    return img[:, xs][m].reshape(-1, 3)


def _contours(up: torch.Tensor, lo: torch.Tensor, xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """y of the upper and lower inner-lip curves at columns xs, (n, columns) for up/lo (n, points, 2);
    outside the corners both meet."""
    ou, ol = torch.argsort(up[..., 0], 1), torch.argsort(lo[..., 0], 1)
    g = lambda p, o, c: torch.gather(p[..., c], 1, o).contiguous()  # noqa: E731
    x = xs.expand(len(up), -1)
    yu = _interp(x, g(up, ou, 0), g(up, ou, 1))
    yl = _interp(x, g(lo, ol, 0), g(lo, ol, 1))
    first = torch.minimum(up[..., 0].amin(1), lo[..., 0].amin(1))[:, None]
    last = torch.maximum(up[..., 0].amax(1), lo[..., 0].amax(1))[:, None]
    yl = torch.where((x < first) | (x > last), yu, yl)
    return yu, yl
