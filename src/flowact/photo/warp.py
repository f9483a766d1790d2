"""Motion -> displacement of the rig's vertices, in output pixels.

The vertices are the 468 mesh points, one extra point in each eye (the iris, for gaze), a ring
around the head (hair, ears: they turn with the head), an outer ring and a shoulder row (still,
or swaying with the body) and the frame's border (still). Every expression is a fixed field
over these vertices, so the expression part of a frame is one (16,) x (16, 2V) product; head
rotation is the only non-linear part: the face turns in 3-D about a pivot behind it (mesh
depth, orthographic projection), the ring turns with it and the neck follows partly.

Amplitudes are in inter-ocular distances (IOD) so that any photo moves alike, chosen to match
the synthetic world's cartoon (world/draw.py): mouth_open=1 drops the lower lip by ~0.38 IOD,
head yaw=1 is ~29 degrees, roll=1 is 0.35 rad as in the world.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..world.motion_vector import BLINK, BROW, MOTION_DIM, SMILE, index
from . import face as F

YAW_RAD, PITCH_RAD, ROLL_RAD = 0.5, 0.35, 0.35
OPEN, WIDTH, ROUND, CLOSED, TEETH = range(5)
YAW, PITCH, ROLL = index("head_yaw"), index("head_pitch"), index("head_roll")
GAZE_X, GAZE_Y = index("gaze_x"), index("gaze_y")
SWAY, BREATH, SHRUG = index("body_sway"), index("body_breath"), index("body_shrug")


@dataclass(frozen=True)
class Deformer:
    """vertices: (V, 3) rest positions (x, y pixels; z depth); basis: (MOTION_DIM, V, 2) pixels per
    unit of motion; head_weight: (V,) how much of the head's rotation each vertex follows;
    pivot: (3,) the rotation centre; n_mesh: the first n_mesh vertices are the face mesh."""

    vertices: np.ndarray
    basis: np.ndarray
    head_weight: np.ndarray
    pivot: np.ndarray
    n_mesh: int
    iod: float

    def displace(self, delta: np.ndarray) -> np.ndarray:
        """delta: (frames, MOTION_DIM) motion - reference -> (frames, V, 2) float32 displacement."""
        delta = np.array(delta, np.float32).reshape(-1, MOTION_DIM)
        # lips less pressed than at rest is the opening's job (mouth_open): only pressing acts, so a
        # photo that shows its teeth does not part its lips further on every unpressed frame
        delta[:, CLOSED] = np.maximum(delta[:, CLOSED], 0.0)
        d = np.einsum("fk,kvc->fvc", delta, self.basis)
        # head rotation of the expression-moved points: R = roll @ yaw @ pitch
        p = self.vertices[None].repeat(len(delta), 0)
        p[..., :2] += d
        q = p - self.pivot
        y, x, r = delta[:, YAW] * YAW_RAD, delta[:, PITCH] * PITCH_RAD, delta[:, ROLL] * ROLL_RAD
        cx, sx = np.cos(x)[:, None], np.sin(x)[:, None]
        cy, sy = np.cos(y)[:, None], np.sin(y)[:, None]
        cr, sr = np.cos(r)[:, None], np.sin(r)[:, None]
        # pitch (about x; +pitch nods down: the front (z < 0) goes down), then yaw (+yaw: front to +x)
        qy = q[..., 1] * cx - q[..., 2] * sx
        qz = q[..., 1] * sx + q[..., 2] * cx
        qx = q[..., 0] * cy - qz * sy
        # roll in the image plane (y down: +roll turns clockwise on screen)
        rx = qx * cr - qy * sr
        ry = qx * sr + qy * cr
        turned = np.stack([rx, ry], -1) - q[..., :2]
        return (d + self.head_weight[None, :, None] * turned).astype(np.float32)


def _smooth(t):
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _curve(points: np.ndarray, x: np.ndarray) -> np.ndarray:
    """y of the polyline through `points` (n, 2) at x (sorted by x first)."""
    o = np.argsort(points[:, 0])
    return np.interp(x, points[o, 0], points[o, 1])


def _by_x(x: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    o = np.argsort(x)
    return x[o], f[o]


def _between(xy: np.ndarray, outer, inner, skip) -> list[tuple[int, float]]:
    """Mesh points strictly between two lip contours (left to right), with where between (0 at the
    outer contour, 1 at the inner)."""
    xo, yo = _by_x(xy[list(outer), 0], xy[list(outer), 1])
    xi, yi = _by_x(xy[list(inner), 0], xy[list(inner), 1])
    lo_x, hi_x = max(xo[0], xi[0]), min(xo[-1], xi[-1])
    out = []
    skip = set(skip)
    for i in range(len(xy)):
        x, y = xy[i]
        if i in skip or not lo_x < x < hi_x:
            continue
        a, b = np.interp(x, xo, yo), np.interp(x, xi, yi)
        if abs(b - a) > 0.5 and 0.0 < (y - a) / (b - a) < 1.0:
            out.append((i, float((y - a) / (b - a))))
    return out


def _thin(points: np.ndarray, keep: np.ndarray, min_dist: float) -> np.ndarray:
    """Drop candidate points closer than min_dist to a kept point or an earlier candidate."""
    out = []
    for p in points:
        if np.min(np.linalg.norm(keep - p, axis=1)) >= min_dist and all(np.linalg.norm(q - p) >= min_dist for q in out):
            out.append(p)
    return np.array(out, np.float32).reshape(-1, 2)


def build_deformer(points: np.ndarray, width: int, height: int) -> Deformer:
    """points: (468, 3) mesh in output pixels. Returns the vertex set and its motion fields."""
    pts = np.asarray(points, np.float32)
    xy = pts[:, :2]
    ec = np.stack(
        [xy[list(F.RIGHT_EYE_UPPER + F.RIGHT_EYE_LOWER)].mean(0), xy[list(F.LEFT_EYE_UPPER + F.LEFT_EYE_LOWER)].mean(0)]
    )
    iod = float(np.linalg.norm(ec[1] - ec[0]))
    oval = xy[list(F.FACE_OVAL)]
    centre = oval.mean(0)
    chin_y = float(xy[F.CHIN, 1])
    z_back = float(pts[list(F.FACE_OVAL), 2].mean())

    # rings: around the head (hair, ears; they turn with it), further out (still background), the
    # shoulders, and the frame border; points off the frame are clamped in, crowded ones dropped
    inset = 2.0
    lim = np.array([width - 1 - inset, height - 1 - inset], np.float32)
    ring1 = np.clip(centre + (oval - centre) * np.array([1.32, 1.25]) - [0, 0.15 * iod], inset, lim)
    ring2 = np.clip(centre + (oval - centre) * 1.9 - [0, 0.2 * iod], inset, lim)
    sh_y = min(chin_y + 1.2 * iod, height - 1 - inset)
    shoulders = np.stack([np.linspace(inset, width - 1 - inset, 9), np.full(9, sh_y)], 1)
    nb = max(2, int(round(max(width, height) / 64)))
    bx = np.linspace(0, width, nb + 1)
    by = np.linspace(0, height, nb + 1)
    border = np.unique(  # on the frame's outer edges, so that every pixel centre is inside
        np.concatenate(
            [np.stack([bx, np.zeros_like(bx)], 1), np.stack([bx, np.full_like(bx, height)], 1),
             np.stack([np.zeros_like(by), by], 1), np.stack([np.full_like(by, width), by], 1)]
        ),
        axis=0,
    ).astype(np.float32)  # fmt: skip
    keep = np.concatenate([xy, ec, border])  # the frame's edges always stay: they hold the hull
    ring1 = _thin(ring1, keep, 0.25 * iod)
    keep = np.concatenate([keep, ring1])
    ring2 = _thin(ring2, keep, 0.4 * iod)
    keep = np.concatenate([keep, ring2])
    shoulders = _thin(shoulders, keep, 0.5 * iod)

    n_mesh = len(pts)
    eye0 = n_mesh
    r1 = slice(eye0 + 2, eye0 + 2 + len(ring1))
    r2 = slice(r1.stop, r1.stop + len(ring2))
    shs = slice(r2.stop, r2.stop + len(shoulders))
    bs = slice(shs.stop, shs.stop + len(border))
    V = bs.stop
    verts = np.zeros((V, 3), np.float32)
    verts[:n_mesh] = pts
    verts[eye0 : eye0 + 2, :2] = ec
    verts[eye0 : eye0 + 2, 2] = pts[[159, 386], 2]
    verts[r1, :2], verts[r1, 2] = ring1, z_back
    verts[r2, :2], verts[r2, 2] = ring2, z_back
    verts[shs, :2], verts[shs, 2] = shoulders, z_back
    verts[bs, :2], verts[bs, 2] = border, z_back
    v = verts[:, :2]

    B = np.zeros((MOTION_DIM, V, 2), np.float32)
    is_face = np.zeros(V, bool)
    is_face[: eye0 + 2] = True

    # ---- mouth
    corners = xy[list(F.MOUTH_CORNERS)]
    mc = corners.mean(0)
    half_w = float(np.linalg.norm(corners[1] - corners[0]) / 2)
    inner_lo = list(F.LIPS_INNER_LOWER[1:-1])
    inner_up = list(F.LIPS_INNER_UPPER[1:-1])
    outer_lo = list(F.LIPS_OUTER_LOWER[1:-1])
    outer_up = list(F.LIPS_OUTER_UPPER[1:-1])
    lips = sorted(set(F.LIPS_OUTER + F.LIPS_INNER_UPPER + F.LIPS_INNER_LOWER))
    y_lo = float(xy[inner_lo, 1].mean())
    # jaw: everything below the mouth line drops, less towards the ears (the hinge)
    jaw = _smooth((v[:, 1] - (mc[1] - 0.05 * iod)) / max(y_lo - mc[1] + 0.1 * iod, 1.0))
    jaw *= np.clip(1.0 - 0.6 * ((v[:, 0] - mc[0]) / (1.6 * iod)) ** 2, 0.0, 1.0)
    jaw[~is_face] = 0.0
    below = (np.arange(V) >= r1.start) & (np.arange(V) < r1.stop) & (v[:, 1] > chin_y - 0.2 * iod)
    jaw[below] = 0.35 * np.clip(1 - np.abs(v[below, 0] - mc[0]) / (1.5 * iod), 0, 1)
    jaw[list(F.MOUTH_CORNERS)] = 0.45
    # the lips part as a lens, not a box: the corners hold them, so their drop (and the upper lip's
    # lift) falls off towards the corners; the lower lip keeps its thickness (inner and outer alike)
    across = np.clip(np.abs(v[:, 0] - mc[0]) / half_w, 0.0, 1.0)
    taper = np.clip(1.0 - across**2, 0.05, 1.0)
    jaw[inner_lo + outer_lo] = taper[inner_lo + outer_lo]
    drop = 0.36 * iod  # lips 0.13 IOD apart at a typical open=0.35 (about 8 mm), the cartoon drops 0.38 IOD
    B[OPEN, :, 1] = drop * jaw
    B[OPEN, inner_up + outer_up, 1] = -0.05 * iod * taper[inner_up + outer_up]
    # lateral fields: lip points by their x offset, the cheeks by distance to the corners
    side = np.clip((v[:, 0] - mc[0]) / half_w, -1.3, 1.3)
    near_corner = np.exp(-(np.min(np.linalg.norm(v[:, None] - corners[None], axis=2), 1) ** 2) / (2 * (0.3 * iod) ** 2))
    lat = np.where(np.isin(np.arange(V), lips), side, np.sign(side) * near_corner * 0.8)
    lat[~is_face] = 0.0
    B[WIDTH, :, 0] = 0.18 * iod * lat  # spread lips (ee): at width 0.85 the mouth ~15% wider than at rest
    B[ROUND, :, 0] = -0.16 * iod * lat
    B[ROUND, outer_up, 1] = -0.04 * iod
    B[ROUND, outer_lo, 1] = 0.04 * iod
    # pressed lips: the inner lips meet (closing the photo's own gap) and the outer lips thin
    gap_up = np.clip(_curve(xy[inner_lo], xy[inner_up, 0]) - xy[inner_up, 1], 0, None)
    gap_lo = np.clip(xy[inner_lo, 1] - _curve(xy[inner_up], xy[inner_lo, 0]), 0, None)
    B[CLOSED, inner_up, 1] = gap_up / 2 / 0.45 + 0.01 * iod
    B[CLOSED, inner_lo, 1] = -(gap_lo / 2 / 0.45 + 0.01 * iod)
    B[CLOSED, outer_up, 1] += 0.06 * iod  # pressed lips roll in: their red thins
    B[CLOSED, outer_lo, 1] += -0.06 * iod
    B[TEETH, inner_up + outer_up, 1] = -0.06 * iod
    B[TEETH, inner_lo + outer_lo, 1] = -0.03 * iod
    # the mesh's points inside each lip (between its outer and inner contour) move as the lip does,
    # interpolated between the two contours: by height alone a drooping mouth's upper lip fell with the jaw
    for outer, inner in ((F.LIPS_OUTER_UPPER, F.LIPS_INNER_UPPER), (F.LIPS_OUTER_LOWER, F.LIPS_INNER_LOWER)):
        for i, t in _between(xy, outer, inner, lips):
            for k in (OPEN, WIDTH, ROUND, CLOSED, TEETH):
                for c in (0, 1):
                    fo = np.interp(xy[i, 0], *_by_x(xy[list(outer), 0], B[k, list(outer), c]))
                    fi = np.interp(xy[i, 0], *_by_x(xy[list(inner), 0], B[k, list(inner), c]))
                    B[k, i, c] = (1 - t) * fo + t * fi
    # smile: corners up and out, the cheeks follow, lower lids rise a little
    B[SMILE, :, 0] += 0.08 * iod * np.sign(side) * near_corner * is_face
    B[SMILE, :, 1] += -0.12 * iod * near_corner * is_face
    for lower in (F.RIGHT_EYE_LOWER[1:-1], F.LEFT_EYE_LOWER[1:-1]):
        B[SMILE, list(lower), 1] += -0.03 * iod

    # ---- eyes: the upper lid comes down to the lower lid; the skin just above follows part way.
    # The backward map reads d at the destination, so the whole eye (centre and lower lid too)
    # carries the lid's travel: every pixel of the eye then shows lid skin from above it.
    for up, lo, e in ((F.RIGHT_EYE_UPPER, F.RIGHT_EYE_LOWER, eye0), (F.LEFT_EYE_UPPER, F.LEFT_EYE_LOWER, eye0 + 1)):
        up, lo = list(up[1:-1]), list(lo[1:-1])
        travel = xy[lo, 1] - xy[up, 1]
        B[BLINK, up, 1] = travel
        B[BLINK, lo, 1] = 0.7 * travel
        B[BLINK, e, 1] = 1.1 * float(travel.mean())
        lid = xy[up].mean(0)
        above = (v[:, 1] < lid[1] - 0.05 * iod) & is_face
        fall = np.exp(-np.sum((v - lid) ** 2, 1) / (2 * (0.15 * iod) ** 2)) * above
        B[BLINK, :, 1] += 0.35 * float(travel.mean()) * fall
        ew = float(np.linalg.norm(xy[up[0]] - xy[up[-1]]))
        B[GAZE_X, e, 0] = 0.22 * ew
        B[GAZE_Y, e, 1] = 0.12 * ew

    # ---- brows: up, with the forehead above and the upper lids a little
    for brow in (F.RIGHT_BROW, F.LEFT_BROW):
        bc = xy[list(brow)].mean(0)
        d2 = np.sum((v - bc) ** 2, 1)
        w = np.exp(-d2 / (2 * (0.35 * iod) ** 2)) * is_face
        w[list(brow)] = 1.0
        B[BROW, :, 1] += -0.12 * iod * w
    B[BROW, : eye0 + 2, 1] *= np.clip((mc[1] - v[: eye0 + 2, 1]) / (0.8 * iod), 0, 1) ** 0.5  # nothing below the nose

    # ---- body: the head and ring follow the body part way; shoulders and the bottom edge move fully
    head_weight = np.zeros(V, np.float32)
    head_weight[: eye0 + 2] = 1.0
    head_weight[r1] = 0.9
    head_weight[below] = 0.35
    body = np.zeros(V, np.float32)
    body[: r1.stop] = 0.6
    body[below] = 0.8
    lowr2 = np.zeros(V, bool)
    lowr2[r2] = v[r2, 1] > chin_y
    body[lowr2] = 1.0
    body[shs] = 1.0
    bottom = np.zeros(V, bool)
    bottom[bs] = v[bs, 1] >= height
    # the body is the talker's: shoulders are ~2.5 eye distances to each side of the face's centre, and
    # beyond them (another person of a group photo, the background beside the body) nothing sways
    beside = np.clip(1.0 - (np.abs(v[:, 0] - centre[0]) - 2.6 * iod) / (1.2 * iod), 0.0, 1.0)
    H = float(height)
    B[SWAY, :, 0] = H * np.where(bottom, 1.0, body) * beside
    B[BREATH, :, 1] = -H * np.where(bottom, 0.0, body * 0.9) * beside
    B[SHRUG, :, 1] = -H * np.where(bottom, 0.0, body) * beside
    pivot = np.array([centre[0], float(ec[:, 1].mean()), z_back + 0.5 * iod], np.float32)
    return Deformer(verts, B, head_weight, pivot, n_mesh, iod)
