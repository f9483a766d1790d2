"""The mouth drawn as the motion says: the world's lip shapes, at the reference's mouth, moved with the head.

A latent cell is 8 pixels and a drawn mouth at 128 px about 10 by 2 to 10: the latents say roughly how
open it is, and the decoder draws their blur (docs/motion-video.md). The motion says exactly what each
frame's mouth is: five numbers (open, width, round, closed, teeth) and the head's pose. So, as the arms
are (model/arms.py), the mouth is drawn by rule, after the decoder, from the motion alone:

- `MouthRig` finds, once per stream, the reference's mouth (its centre, pixels), how many pixels one
  character unit is, the mouth's width and the head's half-width and half-height (character units), and
  three colours: the lips, their edge (the outline, or the lips where the picture has none) and what
  surrounds the mouth (skin, or a beard). A small convolutional net, a heat map's soft centre and its
  features pooled there, trained on the world's characters (scripts/train_rig.py --part mouth).
- `mouth_place` moves the mouth with the head's turn, nod and tilt and the body's sway, breathing and
  shrug, as the world does (world/draw.py Renderer.mouth_place).
- `draw_mouth` covers the resting mouth with the surrounding colour and draws the frame's lips, the
  open mouth's dark inside, tongue and upper teeth, the seam of closed lips, pressed lips' dimples and
  teeth on the lower lip: the world's shapes (world/draw.py _mouth), anti-aliased by 4 x 4 samples a
  pixel, on the crop the mouths can reach.

The motion's layout is world/motion_vector.py's (`video_input`: each number minus the rest pose's); the
model does not import the world: tests/test_mouth.py checks that the two agree and that the drawn mouth
matches the world's own pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .arms import RigTrunk, soft_centres

MOUTH = slice(0, 5)  # open, width, round, closed, teeth: minus REST_MOUTH
HEAD = slice(5, 8)  # yaw, pitch, roll
SMILE = 12
BODY = slice(13, 16)  # sway, breathing lift, shrug
REST_MOUTH = (0.0, 0.45, 0.15, 0.55, 0.0)  # world/clip.py REST_MOUTH: the reference's mouth
HEAD_Y = 0.33  # world/behaviour.py: the head's centre at rest, character units
BELOW_EYES = 0.078  # world/draw.py MOUTH_BELOW_EYES
ROLL = 0.35  # the head's tilt, radians per unit of roll (world/draw.py Renderer.frame)
OUTLINE = 0.005  # the outline's width, frame heights (world/draw.py's Canvas line width)
# the world's fixed colours (0-255): the open mouth's inside, the tongue, teeth
CAVITY, TONGUE, WHITE = (70, 18, 30), (200, 90, 100), (250, 250, 250)
SAMPLES = 4  # anti-aliasing: samples per pixel and axis


class MouthRig(RigTrunk):
    """A reference picture (b, 3, H, W) in [-1, 1] -> its mouth at rest: centre (b, 2) px (pixel i's centre at
    i + 0.5), pixels per character unit (b,), shape (b, 3): the mouth's half-width scale and the head's half
    width and height (character units), colours (b, 3 [lips, edge, around], 3 rgb) in [-1, 1]."""

    def __init__(self, width: int = 48):
        super().__init__(width)
        self.heat = nn.Conv2d(width, 1, 1)
        self.head = nn.Sequential(nn.Linear(2 * width + 3, 96), nn.SiLU(), nn.Linear(96, 13))

    def forward(self, ref: torch.Tensor) -> tuple[torch.Tensor, ...]:
        b, _, h, w = ref.shape
        x, small = self.features(ref)
        x = F.silu(x)
        centre, p = soft_centres(self.heat(x), h, w)
        centre, p = centre[:, 0], p[:, 0]
        # the features where the mouth is, the whole picture's, and its pixels' colour there
        at = (x.float().flatten(2) * p[:, None]).sum(-1)
        where = (centre / torch.tensor([w, h], device=centre.device) * 2 - 1)[:, None, None]
        pix = F.grid_sample(small, where, align_corners=False)[:, :, 0, 0]
        o = self.head(torch.cat([at, x.float().mean((2, 3)), pix], 1).to(self.heat.weight.dtype)).float()
        unit = (1.2 + 0.1 * o[:, 0]) * h  # the world's scale is 1.12-1.26 frame heights
        shape = torch.stack([0.04 + 0.01 * o[:, 1], 0.12 + 0.01 * o[:, 2], 0.145 + 0.01 * o[:, 3]], -1)
        colours = o[:, 4:].clamp(-1, 1).view(b, 3, 3)
        return centre, unit, shape, colours


def mouth_place(centre: torch.Tensor, unit: torch.Tensor, shape: torch.Tensor, motion: torch.Tensor):
    """The reference's mouth centre (b, 2) px, pixels per unit (b,), shape (b, 3) (MouthRig), motion (b, t, d)
    -> each frame's mouth centre (b, t, 2) px and the head's tilt (b, t) radians."""
    m = motion.float()
    yaw, pitch, roll = m[..., 5], m[..., 6], m[..., 7]
    sway, breath, lift = m[..., 13], m[..., 14], m[..., 15]
    rx, ry = shape[:, 1:2].float(), shape[:, 2:3].float()
    angle = ROLL * roll
    cos, sin = torch.cos(angle), torch.sin(angle)
    # the mouth from the neck's top (the head's pivot), then turned with the head
    dx = yaw * (0.01 + 0.35 * rx)
    dy = pitch * (0.012 + 0.22 * ry) - 0.1 * lift - 0.5 * breath + BELOW_EYES - 0.75 * ry
    x = 0.6 * sway + cos * dx - sin * dy
    y = 0.75 * ry - 0.5 * lift + sin * dx + cos * dy - BELOW_EYES  # relative to the reference's mouth (y 0)
    return centre.float()[:, None] + unit.float()[:, None, None] * torch.stack([x, y], -1), angle


def _superellipse(u, v, rx, ry, power):
    """Whether points (u, v) lie inside |u/rx|^p + |v/ry|^p <= 1 (float 0/1)."""
    rx, ry = rx.clamp_min(1e-6), ry.clamp_min(1e-6)
    return (((u / rx).abs() ** power + (v / ry).abs() ** power) <= 1).float()


def _inside(lu, lv, rx, ry, power):
    """`_superellipse` from log|u| and log|v|, each taken once for the shapes that share it: |u/rx|^p is
    exp(p (log|u| - log rx)), an exp where a pow would take a log and an exp again."""
    a = torch.exp(power * (lu - rx.clamp_min(1e-6).log()))
    return ((a + torch.exp(power * (lv - ry.clamp_min(1e-6).log()))) <= 1).float()


def _segment_distance(u, v, a, b):
    """Distance of points (u, v) to the segments a -> b (each (n, 2), broadcast over the points)."""
    ax, ay, bx, by = (t[:, None, None] for t in (a[:, 0], a[:, 1], b[:, 0], b[:, 1]))
    dx, dy = bx - ax, by - ay
    k = (((u - ax) * dx + (v - ay) * dy) / (dx * dx + dy * dy).clamp_min(1e-12)).clamp(0, 1)
    return torch.hypot(u - ax - k * dx, v - ay - k * dy)


def _foreign(pixels: torch.Tensor, palette: torch.Tensor, near: float = 0.15, far: float = 0.3) -> torch.Tensor:
    """Pixels (n, 3, h, w) and each frame's colours (n, P, 3) -> (n, 1, h, w) in [0, 1]: how far each pixel is
    from every mix of two of the colours (0 within `near`, 1 beyond `far`, [-1, 1] units).

    Each unordered pair once (its segment holds both colours alone too), and the squared distance to a segment
    from dot products, |q - a|^2 - 2 t (q - a).d + t^2 |d|^2 with q.a and q.d as small matrix products: the
    work is (n, pairs, pixels), never (n, pairs, pixels, 3)."""
    n, _, h, w = pixels.shape
    i, j = torch.triu_indices(palette.shape[1], palette.shape[1], 1, device=palette.device)
    a = palette[:, i].float()  # (n, K, 3): each segment's start ...
    d = palette[:, j].float() - a  # ... and its direction
    q = pixels.float().flatten(2)  # (n, 3, hw)
    rel = d @ q - (a * d).sum(-1, keepdim=True)  # (q - a).d, (n, K, hw)
    dd = (d * d).sum(-1, keepdim=True)
    t = (rel / dd.clamp_min(1e-6)).clamp(0, 1)
    qa2 = q.square().sum(1, keepdim=True) - 2 * (a @ q) + a.square().sum(-1, keepdim=True)  # |q - a|^2
    dist = (qa2 - t * (2 * rel - t * dd)).amin(1).clamp_min(0).sqrt()  # (n, hw): the nearest mix
    return ((dist - near) / (far - near)).clamp(0, 1).view(n, 1, h, w)


def _colour(rgb) -> torch.Tensor:
    return torch.tensor(rgb, dtype=torch.float32) / 127.5 - 1


@dataclass
class MouthLayers:
    """What `mouth_layers` worked out from the motion alone, for `paint_mouth` to lay over decoded frames: the crop
    (x0, y0, x1, y1) the mouths can reach; the layers' coverage (n, L, h, w) and colours (n, L, 3) in drawing order
    (each over the last: the cover, the lips, ...; a decoded pixel that is no mix of two of these colours is something
    in front of the mouth, and kept); the reference's moustache carried to the head's place (n, 3, h, w) and where it
    stays in front (n, 1, h, w), or None."""

    box: tuple[int, int, int, int]
    alpha: torch.Tensor
    colour: torch.Tensor
    carried: torch.Tensor | None
    carried_alpha: torch.Tensor | None


def mouth_layers(
    size: tuple[int, int, int],
    centre: torch.Tensor,
    angle: torch.Tensor,
    unit: torch.Tensor,
    shape: torch.Tensor,
    colours: torch.Tensor,
    mouth: torch.Tensor,
    smile: torch.Tensor,
    reference: torch.Tensor | None = None,
    home: torch.Tensor | None = None,
) -> MouthLayers | None:
    """Frames of size (n, H, W); per frame: the mouth's centre (n, 2) px and tilt (n,) (`mouth_place`),
    pixels per unit (n,), shape (n, 3) and colours (n, 3, 3) (MouthRig), the mouth's five numbers (n, 5, as the
    world's: open, width, round, closed, teeth) and the smile (n,) -> the layers that cover the resting mouth
    and draw this one (the world's shapes, world/draw.py _mouth), for `paint_mouth` (None: nothing to draw).
    With `reference` (n, 3, H, W) and its mouth's centre `home` (n, 2) px: what the reference has in front of
    its mouth (a moustache, a goatee) moves with the head and stays in front of the drawn one."""
    n, H, W = size
    if n == 0:
        return None
    dev = centre.device
    f32 = dict(device=dev, dtype=torch.float32)
    unit = unit.float()
    # the crop every mouth can reach: the widest, most open mouth, tilted, and a pixel of margin
    r = float((0.085 * unit).max()) + 2.0
    lo = (centre.float().amin(0) - r).floor().tolist()
    hi = (centre.float().amax(0) + r).ceil().tolist()
    x0, y0 = max(0, int(lo[0])), max(0, int(lo[1]))
    x1, y1 = min(W, int(hi[0])), min(H, int(hi[1]))
    if x1 <= x0 or y1 <= y0:
        return None
    k = SAMPLES
    xs = x0 + (torch.arange((x1 - x0) * k, **f32) + 0.5) / k
    ys = y0 + (torch.arange((y1 - y0) * k, **f32) + 0.5) / k
    dx = xs[None, None, :] - centre[:, 0, None, None].float()
    dy = ys[None, :, None] - centre[:, 1, None, None].float()
    cos, sin = torch.cos(angle.float())[:, None, None], torch.sin(angle.float())[:, None, None]
    upx = unit[:, None, None]
    u, v = (cos * dx + sin * dy) / upx, (-sin * dx + cos * dy) / upx  # head-local, character units

    def per(t):
        return t.float()[:, None, None]

    m = mouth.float().clamp(0, 1)
    open_, width, round_, closed, teeth = (per(m[:, i]) for i in range(5))
    smile = per(smile)
    mw = per(shape[:, 0]) * (0.72 + 0.55 * width) * (1 - 0.42 * round_)
    oh = 0.034 * open_
    pressed = ((closed - 0.6) / 0.4).clamp(0, 1)
    lip = 0.009 * (1 + 0.8 * round_) * (1 - 0.6 * pressed)
    curve = 0.008 * smile * (1 - open_)
    power = 2.0 + 0.6 * (1 - round_)
    px = 1 / upx  # one pixel, in character units
    outline = OUTLINE * H * px
    bent = v + curve * (u.abs() / mw.clamp_min(1e-6)) ** 2
    lu, lv, lb = (c.abs().log() for c in (u, v, bent))  # the shapes' shared logs (`_inside`)
    outer = _inside(lu, lb, mw + 0.6 * lip, oh + lip, power)
    # the resting mouth (the reference's, moved with the head) and this one's, widened by a pixel: covered
    rmw = per(shape[:, 0]) * (0.72 + 0.55 * REST_MOUTH[1]) * (1 - 0.42 * REST_MOUTH[2])
    rlip = 0.009 * (1 + 0.8 * REST_MOUTH[2])
    cover = torch.maximum(
        _inside(lu, lv, rmw + 0.6 * rlip + px, rlip + 1.5 * px, 2.0 + 0.6 * (1 - REST_MOUTH[2])),
        _inside(lu, lb, mw + 0.6 * lip + px, oh + lip + px, power),
    )
    edge = outer - _inside(lu, lb, mw + 0.6 * lip - outline, oh + lip - outline, power)
    is_open = (oh > 0.0025).float()
    cavity = _inside(lu, lv, mw * 0.86, oh, power) * is_open
    tongue = _inside(lu, (v - oh * 0.55).abs().log(), mw * 0.5, oh * 0.4, 2.0) * (open_ > 0.45).float()
    upper = cavity * (v <= -oh + torch.minimum(oh * 0.55, torch.full_like(oh, 0.008))).float()
    a = torch.stack([-mw[:, 0, 0], -curve[:, 0, 0]], -1)
    mid = torch.stack([torch.zeros_like(mw[:, 0, 0]), 0.002 * pressed[:, 0, 0]], -1)
    b = torch.stack([mw[:, 0, 0], -curve[:, 0, 0]], -1)
    seam_w = torch.maximum((0.0035 + 0.005 * pressed), px / 3)
    seam = torch.minimum(_segment_distance(u, v, a, mid), _segment_distance(u, v, mid, b))
    seam = (seam <= seam_w / 2).float() * (1 - is_open)
    dimple_r = torch.maximum(0.004 * pressed, px / 6)
    dimples = torch.zeros_like(u)
    for s in (-1, 1):
        dimples = torch.maximum(dimples, (torch.hypot(u - s * (mw + 0.8 * lip), v + curve) <= dimple_r).float())
    dimples = dimples * (pressed > 0.3).float() * (1 - is_open)
    brx = mw * 0.55
    band = (u.abs() <= brx) & (v >= -0.002)
    band = band & (v <= 0.001 + 0.0065 * teeth * (1 - (u / brx.clamp_min(1e-6)) ** 2).clamp_min(0).sqrt())
    band = band.float() * (teeth > 0.2).float()

    lips, edge_c, around = (colours[:, i].float()[:, :, None, None] for i in range(3))
    layers = [
        (cover, around),
        (outer, lips),
        (edge, edge_c),
        (cavity, _colour(CAVITY).to(dev)[None, :, None, None]),
        (tongue, _colour(TONGUE).to(dev)[None, :, None, None]),
        (upper, _colour(WHITE).to(dev)[None, :, None, None]),
        (seam, (lips + 1) * 0.4 - 1),
        (dimples, (around + 1) * 0.6 - 1),
        (band, _colour(WHITE).to(dev)[None, :, None, None]),
    ]
    alpha = F.avg_pool2d(torch.stack([mask for mask, _ in layers], 1), k)  # the samples' share of each pixel
    colour = torch.stack([col.expand(n, 3, 1, 1)[:, :, 0, 0] for _, col in layers], 1)  # (n, L, 3)
    carried = carried_alpha = None
    if reference is not None:
        # each pixel centre, head-local (the mean of its samples'), in pixels: the reference's head is upright
        pu, pv = (F.avg_pool2d(c[:, None], k)[:, 0] * upx for c in (u, v))
        src = torch.stack([home[:, 0, None, None].float() + pu, home[:, 1, None, None].float() + pv], -1)
        Hr, Wr = reference.shape[-2:]
        grid = src / torch.tensor([Wr, Hr], **f32) * 2 - 1
        carried = F.grid_sample(reference.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
        # only where this mouth was drawn, and only what lies off the reference's own lips and is not the
        # colour around them (its moustache, its goatee: a pale moustache mixes like teeth with the inside, so
        # colour alone cannot tell it)
        ru, rv = pu / upx, pv / upx
        lips_r = _superellipse(ru, rv, rmw + 0.6 * rlip + 2 * px, rlip + 2 * px, 2.0 + 0.6 * (1 - REST_MOUTH[2]))
        off = ((carried - around[:, :, :1, :1]).square().sum(1, keepdim=True).sqrt() - 0.15) / 0.15
        carried_alpha = alpha[:, :1] * (1 - lips_r[:, None]) * off.clamp(0, 1)  # alpha[:, :1]: the cover's
    return MouthLayers((x0, y0, x1, y1), alpha, colour, carried, carried_alpha)


def paint_mouth(frames: torch.Tensor, layers: MouthLayers | None) -> torch.Tensor:
    """Frames (n, 3, H, W) in [-1, 1] with `mouth_layers`' mouth drawn over them. What the world draws in front of
    the mouth (a moustache, a goatee, a strand of hair) stays in front: the reference's, carried to the head's place
    (where the decoder drew the mouth open it drew no moustache), then a pixel of the frame whose colour is no mix
    of two of the drawn colours."""
    if layers is None:
        return frames
    x0, y0, x1, y1 = layers.box
    base = frames[:, :, y0:y1, x0:x1].float()
    out = base
    for i in range(layers.alpha.shape[1]):
        out = out + layers.alpha[:, i : i + 1] * (layers.colour[:, i, :, None, None] - out)
    if layers.carried is not None:
        out = out + layers.carried_alpha * (layers.carried - out)
    out = out + _foreign(base, layers.colour) * (base - out)
    frames = frames.clone()
    frames[:, :, y0:y1, x0:x1] = out.to(frames.dtype)
    return frames


def draw_mouth(frames: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """Frames (n, 3, H, W) in [-1, 1] and `mouth_layers`' other arguments -> the frames with the resting mouth
    covered and this mouth drawn."""
    n, _, H, W = frames.shape
    return paint_mouth(frames, mouth_layers((n, H, W), *args, **kwargs))


def mouth_plan(
    rig: tuple[torch.Tensor, ...], motion: torch.Tensor, size: tuple[int, int], reference: torch.Tensor | None = None
) -> MouthLayers | None:
    """The rig's results for the b references, the frames' motion (b, t, d) (each number minus the rest pose's:
    world/motion_vector.py video_input), the frames' size (H, W) -> the layers that draw their mouths
    (`paint_mouth`); with the references (b, 3, H, W), what they hold in front of their mouths kept in front. From
    the motion alone: a stream works it out beside the video model, before the chunk is decoded."""
    centre, unit, shape, colours = rig
    b, t = motion.shape[:2]
    at, angle = mouth_place(centre, unit, shape, motion)
    m = motion.float()
    rest = torch.tensor(REST_MOUTH, device=m.device)
    clip = torch.arange(b, device=m.device).repeat_interleave(t)
    return mouth_layers(
        (b * t, *size),
        at.reshape(b * t, 2),
        angle.reshape(-1),
        unit[clip],
        shape[clip],
        colours[clip],
        (m[..., MOUTH] + rest).reshape(b * t, 5),
        m[..., SMILE].reshape(-1),
        None if reference is None else reference[clip],
        None if reference is None else centre[clip],
    )
