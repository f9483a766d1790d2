"""Arms drawn where the motion puts them: the reference's own arms, moved.

The decoder draws an arm far from the reference's pose as a faint smear (a latent cell is 8 pixels and
an arm 10 wide; the blend towards the reference paints the resting arm back). The motion says exactly
where each arm is. So, as the world draws them (an upper arm, a forearm and a hand, on top of everything
else), a frame's arms are cut from the reference picture and moved, piece by piece, rigidly, to where the
motion puts them:

- `ArmRig` finds, once per stream, where the reference's arms are: each arm's shoulder, elbow and wrist
  (pixels) and how many pixels one character unit is (the world's proportions are in those units). A
  small convolutional net, heat maps and their centres, trained on the world's characters
  (scripts/train_rig.py).
- `arm_joints` moves them by a frame's motion: the shoulders by the body's sway, breathing and shrug, the
  elbows and wrists by the arm numbers (relative to the rest pose, in units of the arm's reach).
- `arm_composite` cuts each piece from the reference (the upper arm; the forearm with the hand) and draws
  it at its new place, and says where an arm is now (`now`) and where the reference's arm was and is no
  more (`gone`). What the resting arm hid is continued from just beside it, on its own side (the torso's
  or the background's): flat colours, steady from frame to frame, where the decoder drew a smear.

For a frame whose arms are where the reference has them nothing changes (the pieces fade in with the
joints' displacement, from half a pixel to two), so weights and tracks without arm motion draw as before.

The motion's layout is world/motion_vector.py's (`video_motion`): the model does not import the world;
tests/test_arms.py checks that the two agree.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

BODY = slice(13, 16)  # the body's sway, breathing lift and shrug, relative to the reference (character units)
ARMS = slice(16, 24)  # left elbow xy, left wrist xy, right elbow xy, right wrist xy: minus the rest pose's
# the world's arm, in character units (world/draw.py _arm: capsules of these radii; the hand a disc
# beyond the wrist), each widened by the outline
OUTLINE = 0.005
UPPER_R = 0.034 + OUTLINE
FORE_R = 0.026 + OUTLINE
HAND_R = 0.025 + OUTLINE
HAND_AHEAD = 0.02  # the hand's centre beyond the wrist
SPLIT = 0.7  # see arm_composite: where, across a resting arm, what it hid turns from background to torso
BESIDE = 0.047  # see arm_beside: how far beside a moved arm the reference is drawn, in frame heights (6 px at 128)
RIG_SIZE = 128  # the rig reads the reference at this size


class RigTrunk(nn.Module):
    """The rigs' shared trunk (ArmRig, model/mouth.py MouthRig): a reference picture (b, 3, H, W) in [-1, 1], read at
    RIG_SIZE with its pixel coordinates as two more channels -> features at 1/4 size (b, width, s, s) (the residual
    stream, before its SiLU) and the picture at RIG_SIZE (b, 3, RIG_SIZE, RIG_SIZE), float32."""

    def __init__(self, width: int = 48):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(5, 24, 3, stride=2, padding=1), nn.SiLU(), nn.Conv2d(24, width, 3, stride=2, padding=1)
        )
        self.body = nn.ModuleList([nn.Conv2d(width, width, 3, padding=d, dilation=d) for d in (1, 2, 4, 8, 1)])
        self.norms = nn.ModuleList([nn.GroupNorm(8, width) for _ in self.body])

    def features(self, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = ref.shape[0]
        small = F.interpolate(ref.float(), size=(RIG_SIZE, RIG_SIZE), mode="bilinear", align_corners=False)
        ys = torch.linspace(-1, 1, RIG_SIZE, device=small.device)
        coords = torch.stack(torch.meshgrid(ys, ys, indexing="ij")[::-1])  # x, y channels
        x = self.stem(torch.cat([small, coords.expand(b, -1, -1, -1)], 1).to(self.stem[0].weight.dtype))
        for conv, norm in zip(self.body, self.norms):
            x = x + conv(F.silu(norm(x)))
        return x, small


def soft_centres(heat: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Heat maps (b, k, s, s) -> their soft centres (b, k, 2) in pixels of an (h, w) picture (pixel i's centre at
    i + 0.5), and the maps as probabilities (b, k, s * s)."""
    b, k, s, _ = heat.shape
    p = heat.float().flatten(2).softmax(-1)
    grid = (torch.arange(s, device=heat.device, dtype=p.dtype) + 0.5) / s  # cell centres, 0..1
    p2 = p.view(b, k, s, s)
    px = (p2.sum(2) * grid).sum(-1) * w
    py = (p2.sum(3) * grid).sum(-1) * h
    return torch.stack([px, py], -1), p


class ArmRig(RigTrunk):
    """A reference picture (b, 3, H, W) in [-1, 1] -> its arms at rest: joints (b, 2 arms [left, right],
    3 [shoulder, elbow, wrist], 2 xy) in pixels (pixel i's centre at i + 0.5), and pixels per character
    unit (b,). Heat maps at 1/4 size, their soft centres; the unit from the pooled features."""

    JOINTS = 6

    def __init__(self, width: int = 48):
        super().__init__(width)
        self.heat = nn.Conv2d(width, self.JOINTS, 1)
        self.unit = nn.Linear(width, 1)

    def forward(self, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, h, w = ref.shape
        x, _ = self.features(ref)
        joints, _ = soft_centres(self.heat(F.silu(x)), h, w)
        unit = (1.2 + 0.1 * self.unit(x.mean((2, 3)))[:, 0].float()) * h  # the world's scale is 1.12-1.26 frame heights
        return joints.view(b, 2, 3, 2), unit


def arm_joints(rest: torch.Tensor, unit: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
    """The reference's arms at rest (b, 2, 3, 2) px, pixels per unit (b,), motion (b, t, 24) -> each frame's
    joints (b, t, 2, 3, 2) px."""
    b, t = motion.shape[:2]
    m = motion.float()
    shoulder0 = rest[:, :, 0]  # (b, 2, 2)
    reach = (rest[:, :, 1] - rest[:, :, 0]).norm(dim=-1) + (rest[:, :, 2] - rest[:, :, 1]).norm(dim=-1)  # (b, 2)
    pose0 = (rest[:, :, 1:] - shoulder0[:, :, None]) / reach[..., None, None]  # (b, 2, 2, 2)
    body = m[..., BODY]
    shift = unit[:, None, None] * torch.stack([body[..., 0], -(body[..., 1] + body[..., 2])], -1)  # (b, t, 2)
    shoulder = shoulder0[:, None] + shift[:, :, None]  # (b, t, 2, 2)
    pose = pose0[:, None] + m[..., ARMS].reshape(b, t, 2, 2, 2)
    elbow_wrist = shoulder[:, :, :, None] + reach[:, None, :, None, None] * pose
    return torch.cat([shoulder[:, :, :, None], elbow_wrist], 3)


def _pieces(j: torch.Tensor, unit: torch.Tensor):
    """Joints (n, 2, 3, 2) -> each arm's two pieces, as segments: starts (n, 4, 2), unit directions (n, 4, 2),
    lengths (n, 4), in the order they are drawn (left upper, left forearm, right upper, right forearm)."""
    a = torch.stack([j[:, 0, 0], j[:, 0, 1], j[:, 1, 0], j[:, 1, 1]], 1)
    e = torch.stack([j[:, 0, 1], j[:, 0, 2], j[:, 1, 1], j[:, 1, 2]], 1)
    d = e - a
    length = d.norm(dim=-1).clamp_min(1e-3)
    return a, d / length[..., None], length


def _inside(px: torch.Tensor, py: torch.Tensor, a, u, length, unit):
    """Pixel centres px, py (h, w) against the pieces of (n, 4, ...): each pixel's coordinates along and across
    each piece (n, 4, h, w) and its coverage (n, 4, h, w) in [0, 1] (one pixel of soft edge)."""
    ax, ay, ux, uy = (v[..., None, None] for v in (a[..., 0], a[..., 1], u[..., 0], u[..., 1]))
    dx, dy = px - ax, py - ay
    along = dx * ux + dy * uy
    across = dy * ux - dx * uy
    reach = torch.tensor([UPPER_R, FORE_R, UPPER_R, FORE_R], device=px.device) * unit[:, None] + 0.5  # (n, 4)
    end = length[..., None, None]
    over = along - torch.minimum(along.clamp_min(0), end)
    cover = (reach[..., None, None] - torch.hypot(over, across)).clamp_(0, 1)
    # the hand: a disc ahead of the forearm's end
    hand_at = end[:, 1::2] + HAND_AHEAD * unit[:, None, None, None]
    hand = (HAND_R * unit[:, None, None, None] + 0.5 - torch.hypot(along[:, 1::2] - hand_at, across[:, 1::2])).clamp_(
        0, 1
    )
    cover[:, 1::2] = torch.maximum(cover[:, 1::2], hand)
    return along, across, cover


def _moved_from(along, across, cover, a0, u0, shift=None):
    """Each pixel's source at rest: the piece drawn last that covers it (left arm, then right; the upper arm,
    then the forearm), the same place along and across (`shift`, (n, 4, h, w): across replaced) -> (n, h, w, 2)."""
    k = torch.zeros(cover.shape[0], *cover.shape[2:], dtype=torch.long, device=cover.device)
    for j in range(1, 4):
        k = torch.where(cover[:, j] > 0, j, k)
    pick = k[:, None]
    al = along.gather(1, pick)[:, 0]
    ac = (across if shift is None else shift).gather(1, pick)[:, 0]
    n = len(k)
    par = [v.gather(1, k.view(n, -1)).view_as(k) for v in (a0[..., 0], a0[..., 1], u0[..., 0], u0[..., 1])]
    x = par[0] + al * par[2] - ac * par[3]
    y = par[1] + al * par[3] + ac * par[2]
    return torch.stack([x, y], -1)


def _sample(ref: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """ref (n, 3, H, W) at pixel positions g (n, h, w, 2) of its own grid (a crop's or the whole frame's)."""
    h, w = ref.shape[-2:]
    norm = torch.stack([g[..., 0] / w, g[..., 1] / h], -1) * 2 - 1
    return F.grid_sample(ref, norm, mode="bilinear", padding_mode="border", align_corners=False)


def _grid(x0: int, x1: int, y0: int, y1: int, dev) -> tuple[torch.Tensor, torch.Tensor]:
    xs = torch.arange(x0, x1, device=dev, dtype=torch.float32) + 0.5
    ys = torch.arange(y0, y1, device=dev, dtype=torch.float32) + 0.5
    return xs[None, :].expand(y1 - y0, -1), ys[:, None].expand(-1, x1 - x0)


def arm_rest(ref: torch.Tensor, rest: torch.Tensor, unit: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Once per stream: where the reference's arms are (b, 1, H, W) in [0, 1], and what they hid (b, 3, H, W):
    each pixel of a resting piece continued from just beside it, on its own side (the torso's or the
    background's), as far along: flat colours, steady from frame to frame."""
    h, w = ref.shape[-2:]
    dev = ref.device
    unit = unit.float()
    a0, u0, l0 = _pieces(rest.float(), unit)
    px, py = _grid(0, w, 0, h, dev)
    along0, across0, cover0 = _inside(px, py, a0, u0, l0, unit)
    r0 = torch.tensor([UPPER_R, max(FORE_R, HAND_R), UPPER_R, max(FORE_R, HAND_R)], device=dev) * unit[:, None]
    beside = (r0 + 1.5)[..., None, None]
    # which side of each piece faces the body (the shoulders' midpoint): the torso's edge lies under the
    # arm's inner half, so only the inner part of its width (beyond SPLIT of the radius) is the torso's
    mid = rest.float()[:, :, 0].mean(1)  # (b, 2)
    perp = torch.stack([-u0[..., 1], u0[..., 0]], -1)
    inner = torch.sign(((mid[:, None] - a0) * perp).sum(-1))[..., None, None]  # (b, 4, 1, 1)
    side = torch.where(across0 * inner > SPLIT * r0[..., None, None], beside * inner, -beside * inner)
    fill = _sample(ref.float(), _moved_from(along0, across0, cover0, a0, u0, shift=side))
    return cover0.amax(1, keepdim=True), fill


def arm_composite(
    ref: torch.Tensor,
    rest: torch.Tensor,
    unit: torch.Tensor,
    motion: torch.Tensor,
    hidden: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, ...]:
    """The reference (b, 3, H, W), its arms at rest (b, 2, 3, 2) and pixels per unit (b,) (ArmRig), the frames'
    motion (b, t, 24), `hidden`: `arm_rest` of the same (computed when not given) -> (frames (n,) that moved
    their arms, indices into b*t; their arms cut from the reference and moved (n, 3, H, W); where an arm is
    now (n, 1, H, W) and where the reference's was and is no more (n, 1, H, W), both in [0, 1] and faded in
    with the displacement; what the reference's arm hid (n, 3, H, W)). The moved pieces are worked out on the
    crop of the frame they can reach, not the whole frame."""
    b, t = motion.shape[:2]
    h, w = ref.shape[-2:]
    dev = ref.device
    joints = arm_joints(rest.float(), unit.float(), motion)  # (b, t, 2, 3, 2)
    moved = (joints - rest[:, None].float()).norm(dim=-1).amax((2, 3))  # (b, t): the largest displacement, px
    fade = ((moved - 0.5) / 1.5).clamp(0, 1).reshape(-1)
    idx = torch.nonzero(fade > 0).flatten()
    if len(idx) == 0:
        empty = ref.new_zeros((0, 3, h, w))
        return idx, empty, empty[:, :1], empty[:, :1], empty
    where0, fill = hidden if hidden is not None else arm_rest(ref, rest, unit)
    clip = torch.div(idx, t, rounding_mode="floor")
    n, u = len(idx), unit.float()[clip]
    j_now = joints.reshape(b * t, 2, 3, 2)[idx]
    # the crop the moved pieces can reach: their joints, widened by the widest piece and the hand
    margin = float(((UPPER_R + HAND_AHEAD + HAND_R) * u).max()) + 2.0
    lo = (j_now.reshape(-1, 2).amin(0) - margin).floor().tolist()
    hi = (j_now.reshape(-1, 2).amax(0) + margin).ceil().tolist()
    x0, y0 = max(0, int(lo[0])), max(0, int(lo[1]))
    x1, y1 = min(w, int(hi[0])), min(h, int(hi[1]))
    now = torch.zeros(n, 1, h, w, device=dev)
    cut = torch.zeros(n, 3, h, w, device=dev)
    if x1 > x0 and y1 > y0:
        a1, u1, l1 = _pieces(j_now, u)
        a0, u0, _ = _pieces(rest.float()[clip], u)
        px, py = _grid(x0, x1, y0, y1, dev)
        along, across, cover = _inside(px, py, a1, u1, l1, u)
        now[:, :, y0:y1, x0:x1] = cover.amax(1, keepdim=True)
        cut[:, :, y0:y1, x0:x1] = _sample(ref.float()[clip], _moved_from(along, across, cover, a0, u0))
    gone = (where0[clip].float() - now).clamp_min(0)
    f = fade[idx][:, None, None, None]
    dt = ref.dtype
    return idx, cut.to(dt), (now * f).to(dt), (gone * f).to(dt), fill[clip].to(dt)


def arm_beside(now: torch.Tensor) -> torch.Tensor:
    """Where a moved arm is (n, 1, H, W) in [0, 1] -> the band just beside it (n, 1, H, W) in [0, 1], `BESIDE` of the
    frame's height wide. The video model's latents draw their own guess of a moved arm, a smudge that the cut arm
    does not always cover; in the world only the background or the body lies there, so the decoder draws the
    reference there (docs/motion-video.md). `widen` over the crop the arms reach."""
    h = now.shape[-2]
    r = max(1, round(BESIDE * h))
    out = torch.zeros_like(now)
    rows = torch.nonzero(now.amax((0, 1, 3)) > 0).flatten()
    cols = torch.nonzero(now.amax((0, 1, 2)) > 0).flatten()
    if len(rows) == 0:
        return out
    y0, y1 = max(0, int(rows[0]) - r), min(h, int(rows[-1]) + r + 1)
    x0, x1 = max(0, int(cols[0]) - r), min(now.shape[-1], int(cols[-1]) + r + 1)
    crop = now[..., y0:y1, x0:x1].float()
    out[..., y0:y1, x0:x1] = (widen(crop, r) - crop).clamp(0, 1).to(now.dtype)
    return out


def widen(masks: torch.Tensor, r: int) -> torch.Tensor:
    """Masks (n, 1, h, w) -> each one's max over the (2r+1)-square around every pixel: a separable max, the n masks
    as the channels of one channels-last map (about 4x faster on a CPU than a channel each)."""
    n, _, h, w = masks.shape
    x = masks.reshape(1, n, h, w).contiguous(memory_format=torch.channels_last)
    x = F.max_pool2d(F.max_pool2d(x, (2 * r + 1, 1), 1, (r, 0)), (1, 2 * r + 1), 1, (0, r))
    return x.reshape(n, 1, h, w)
