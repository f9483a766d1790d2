"""PhotoRig: a photo, its face mesh and everything a frame needs, precomputed once.

The output keeps the photo's framing, scaled so its longer side is at most `size` (sides even
for H.264). The rig's vertices (warp.py) are triangulated once (Delaunay); every pixel centre
gets its triangle's three vertices and barycentric weights, stored as a sparse (pixels,
vertices) matrix. A frame is then: vertex displacement (warp.py) -> the backward map at the
vertices -> one sparse product (frames batched) that gives grid_sample's sampling grid directly
(its coordinates are linear in position, so barycentrics interpolate them exactly) -> one
bilinear grid_sample of the photo -> paint the open mouth (mouth.py), once for all the frames of
a call. Only the rows and columns that move are warped, in two halves side by side (the second in
the rig's own thread) once a pass moves 300k pixels: a render's warp thread is its slowest stage
and torch's kernels let go of the GIL.

Backward map: an output pixel p shows the photo at q with q + d(q) = p; the rig uses
q = p - d(p), exact where a region moves rigidly (the jaw drops as one piece, the head turns by
a few pixels). Fixed-point refinement was tried and dropped: across the parting lips the field's
gradient exceeds 1, the iteration does not converge there and it smeared the lower lip; that
region is painted over by the mouth anyway.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import warnings

import numpy as np
import torch
import torch.nn.functional as tF
from PIL import Image
from scipy.sparse import csr_matrix
from scipy.spatial import Delaunay

from ..world.motion_vector import MOTION_DIM, neutral_vector
from . import face as F
from .mouth import MouthPainter, find_parting
from .warp import Deformer, build_deformer

# torch's sparse CSR kernels are marked beta; the rig uses only the CSR @ dense product (tests/test_photo.py
# checks it against scipy's), so its one-time notice is not a stray line on the user's stderr
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)


SPLIT_PIXELS = 300_000  # a pass moving at least this many pixels (all its frames) is warped in two halves at once


def output_size(width: int, height: int, size: int) -> tuple[int, int]:
    """The photo's framing scaled so the longer side is at most `size`, both sides even."""
    s = min(1.0, size / max(width, height))
    return max(2, int(round(width * s)) // 2 * 2), max(2, int(round(height * s)) // 2 * 2)


@dataclass(frozen=True)
class PhotoRig:
    """image: (1, 3, H, W) float32 photo at output size (+0.5, so truncation rounds); mesh: its
    FaceMesh in output pixels; weights: (H * W, V) barycentric weights of every pixel centre in
    the rest (Delaunay) triangulation of the deformer's vertices."""

    image: torch.Tensor
    mesh: F.FaceMesh
    deformer: Deformer
    weights: tuple[np.ndarray, np.ndarray, np.ndarray]  # CSR (H * W + 1 row starts, columns, values)
    mouth: MouthPainter
    support: np.ndarray  # (V, 4) x0, y0, x1, y1: the pixels whose triangle holds each vertex (exclusive ends)
    photo: np.ndarray  # (H, W, 3) uint8 the photo at output size
    pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="flowact-warp"), repr=False, compare=False
    )

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the frames."""
        return self.image.shape[3], self.image.shape[2]

    @property
    def pass_frames(self) -> int:
        """Frames warped in one pass: as many as make ~1M pixels, at most 4 (CPU ms a frame, AVX2, one
        thread, 1/2/4/8 a pass, measured before the mouth was painted once a call: 512x512 8.3/7.4/6.4/7.7,
        1280x720 22.2/24.0/21.9/27.2: past 4 the grids leave the caches; 1280x720 one at a time: a render's
        motion and encoding threads ran 2-3x slower beside 4-frame passes)."""
        w, h = self.size
        return max(1, min(4, (1 << 20) // (w * h)))

    def render(self, motion: np.ndarray, reference: np.ndarray | None = None, chunk: int | None = None) -> np.ndarray:
        """motion: (frames, 16) float32 in MOTION_KEYS order (or 24, with the arms after them: a photo has
        none to move); reference: (16,) the pose the photo shows (default: neutral_vector()). Returns
        (frames, H, W, 3) uint8. Frames are warped `chunk` at a time (default: `pass_frames`)."""
        motion = np.asarray(motion, np.float32)
        if motion.ndim == 2 and motion.shape[1] > MOTION_DIM:
            motion = motion[:, :MOTION_DIM]
        motion = motion.reshape(-1, MOTION_DIM)
        w, h = self.size
        chunk = chunk or self.pass_frames
        ref = neutral_vector() if reference is None else np.asarray(reference, np.float32).reshape(MOTION_DIM)
        disp = self.deformer.displace(motion - ref)  # (frames, V, 2)
        rest = self.deformer.vertices[:, :2]
        source = rest[None] - disp  # first-order backward map (see the module docstring)
        # grid_sample coordinates (align_corners=False) are linear in position, so they interpolate exactly
        source = (source * np.array([2.0 / w, 2.0 / h], np.float32) - 1.0).astype(np.float32)
        moved = torch.from_numpy(rest[None] + disp)
        out = np.empty((len(motion), h, w, 3), np.uint8)
        # the mouth is painted once for all the frames (its ~150 small tensor ops cost ~3 ms a call whatever the
        # frames): over float crops of its region (the photo where a pass leaves it), kept from each pass
        y0m, y1m, x0m, x1m = self.mouth.region(moved)
        mouth = self.image[:, :, y0m:y1m, x0m:x1m].repeat(len(motion), 1, 1, 1)
        for s in range(0, len(motion), chunk):
            n = min(chunk, len(motion) - s)
            out[s : s + n] = self.photo  # (here, not for all frames at once: the pass's frames stay in the caches)
            # only where something moves: the box of the triangles around the vertices that move in any
            # of these frames (the rest of the frame is the photo, exactly)
            still = np.abs(disp[s : s + n]).max(axis=(0, 2)) == 0.0
            if still.all():
                continue
            box = self.support[~still]
            x0, y0 = box[:, 0].min(), box[:, 1].min()
            x1, y1 = box[:, 2].max(), box[:, 3].max()
            targets = (out[s : s + n], mouth[s : s + n], (y0m, y1m, x0m, x1m))
            if (y1 - y0) * (x1 - x0) * n < SPLIT_PIXELS:
                self._pass(y0, y1, x0, x1, source[s : s + n], *targets)
                continue
            # two halves side by side: the upper one in the pool's thread (torch lets go of the GIL in its ops)
            mid = (y0 + y1) // 2
            job = self.pool.submit(self._pass, y0, mid, x0, x1, source[s : s + n], *targets)
            self._pass(mid, y1, x0, x1, source[s : s + n], *targets)
            job.result()
        if y1m > y0m and x1m > x0m and self.mouth.paint(mouth, moved, motion - ref, origin=(y0m, x0m)):
            torch.from_numpy(out[:, y0m:y1m, x0m:x1m]).copy_(mouth.permute(0, 2, 3, 1))
        return out

    def _pass(self, y0: int, y1: int, x0: int, x1: int, source: np.ndarray, out, mouth, region) -> None:
        """Rows y0..y1, columns x0..x1 of a pass's n frames: the photo sampled through the backward map
        (source: (n, V, 2), grid_sample coordinates at the vertices) into out (n, H, W, 3) uint8, and the
        float values inside the mouth's region (y0, y1, x0, x1) into mouth (n, 3, rows, columns)."""
        grid = self._grid(y0, y1, source)[:, :, x0:x1].contiguous()
        frames = tF.grid_sample(
            self.image.expand(len(source), -1, -1, -1),
            grid,
            mode="bilinear",
            padding_mode="border",
            align_corners=False,
        )
        torch.from_numpy(out[:, y0:y1, x0:x1]).copy_(frames.permute(0, 2, 3, 1))  # truncation of x + 0.5
        r0, r1, c0, c1 = region
        a, b, c, d = max(y0, r0), min(y1, r1), max(x0, c0), min(x1, c1)  # the mouth's region warped here
        if a < b and c < d:
            mouth[:, :, a - r0 : b - r0, c - c0 : d - c0] = frames[..., a - y0 : b - y0, c - x0 : d - x0]

    def _grid(self, a: int, b: int, source: np.ndarray) -> torch.Tensor:
        """grid_sample's sampling grid at pixel rows a..b for source (n, V, 2) (its coordinates at the
        vertices): (n, b - a, W, 2), the barycentric weights' rows times source (a view: slice it, then
        make it contiguous: grid_sample runs 2-2.5x slower on a strided grid)."""
        w, n = self.size[0], len(source)
        crow, cols, vals = self.weights
        first, last = crow[a * w], crow[b * w]
        ptr, cols, vals = crow[a * w : b * w + 1] - first, cols[first:last], vals[first:last]  # the rows: views
        if n == 1:  # torch's CSR kernel: faster than scipy's at two columns, and it lets go of the GIL
            t = torch.from_numpy
            rows = torch.sparse_csr_tensor(t(ptr), t(cols), t(vals), size=((b - a) * w, source.shape[1]),
                                           check_invariants=False)  # fmt: skip
            return (rows @ t(source[0])).view(1, b - a, w, 2)
        # scipy's reads each row's weights once for all the frames' columns (torch's 1.5x slower at 8)
        rows = csr_matrix((vals, cols, ptr), shape=((b - a) * w, source.shape[1]))
        grid = rows @ np.ascontiguousarray(source.transpose(1, 0, 2).reshape(source.shape[1], n * 2))
        return torch.from_numpy(grid).view(b - a, w, n, 2).permute(2, 0, 1, 3)


def pixel_weights(points: np.ndarray, simplices: np.ndarray, w: int, h: int) -> csr_matrix:
    """(h * w, V) barycentric weights of every pixel centre in the triangulation, rasterised one
    triangle at a time over its bounding box (scipy's point location took 1-8 s on some runs)."""
    rows, cols, vals = [], [], []
    done = np.zeros(h * w, bool)
    for tri in simplices:
        a, b, c = points[tri]
        x0, x1 = max(0, int(np.floor(min(a[0], b[0], c[0]) - 0.5))), min(w - 1, int(np.ceil(max(a[0], b[0], c[0]))))
        y0, y1 = max(0, int(np.floor(min(a[1], b[1], c[1]) - 0.5))), min(h - 1, int(np.ceil(max(a[1], b[1], c[1]))))
        if x1 < x0 or y1 < y0:
            continue
        gy, gx = np.mgrid[y0 : y1 + 1, x0 : x1 + 1]
        px, py = gx.ravel() + 0.5, gy.ravel() + 0.5
        det = (b[1] - c[1]) * (a[0] - c[0]) + (c[0] - b[0]) * (a[1] - c[1])
        if abs(det) < 1e-12:
            continue
        l0 = ((b[1] - c[1]) * (px - c[0]) + (c[0] - b[0]) * (py - c[1])) / det
        l1 = ((c[1] - a[1]) * (px - c[0]) + (a[0] - c[0]) * (py - c[1])) / det
        l2 = 1.0 - l0 - l1
        idx = gy.ravel() * w + gx.ravel()
        inside = (l0 >= -1e-9) & (l1 >= -1e-9) & (l2 >= -1e-9) & ~done[idx]  # a shared edge's pixel: once
        if not inside.any():
            continue
        idx = idx[inside]
        done[idx] = True
        rows.append(np.repeat(idx, 3))
        cols.append(np.tile(tri, len(idx)))
        vals.append(np.stack([l0[inside], l1[inside], l2[inside]], 1).ravel())
    if not done.all():
        raise AssertionError("pixel centres outside the rig's triangulation")
    r, c, v = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals).astype(np.float32)
    return csr_matrix((v, (r, c)), shape=(h * w, len(points)))


def build_rig(
    photo: np.ndarray | str | Path, size: int = 512, name: str | Path | None = None, mesh: F.FaceMesh | None = None
) -> PhotoRig:
    """A rig from an (H, W, 3) uint8 photo or an image path. Raises FlowactError (naming the file)
    when the photo has no face. `mesh`: the photo's face mesh if it was found already."""
    if isinstance(photo, (str, Path)):
        name = name or photo
        try:
            photo = np.asarray(Image.open(photo).convert("RGB"))
        except OSError as e:
            raise F.FlowactError(f"cannot read the photo ({e})", path=photo) from None
    photo = np.ascontiguousarray(np.asarray(photo)[..., :3], dtype=np.uint8)
    mesh = mesh if mesh is not None else F.analyse(photo, name or "photo")
    H0, W0 = photo.shape[:2]
    w, h = output_size(W0, H0, size)
    if (w, h) != (W0, H0):
        photo = np.asarray(Image.fromarray(photo).resize((w, h), Image.Resampling.LANCZOS))
    sx, sy = w / W0, h / H0
    pts = mesh.points * np.array([sx, sy, (sx + sy) / 2], np.float32)
    b = mesh.box
    mesh = F.FaceMesh(pts, (b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy), mesh.score)
    pts = find_parting(photo, pts, mesh.inter_ocular)  # the warp's lips part where the photo's do
    deformer = build_deformer(pts, w, h)

    # barycentric weights of every pixel centre in the rest triangulation (the border vertices
    # sit on the frame's outer edges, so every pixel centre is inside)
    tri = Delaunay(deformer.vertices[:, :2].astype(np.float64))
    csr = pixel_weights(tri.points, tri.simplices, w, h)
    weights = (csr.indptr.astype(np.int32), csr.indices.astype(np.int32), csr.data.astype(np.float32))

    image = torch.from_numpy(np.array(photo)).permute(2, 0, 1).float().add(0.5).contiguous()[None]
    mouth = MouthPainter.build(photo, deformer.vertices[:, :2], deformer.iod, image[0])
    return PhotoRig(image, mesh, deformer, weights, mouth, vertex_support(tri.points, tri.simplices, w, h), photo)


def vertex_support(points: np.ndarray, simplices: np.ndarray, w: int, h: int) -> np.ndarray:
    """(V, 4) int: x0, y0, x1, y1 (ends exclusive) of the pixels a vertex's triangles cover, padded by a
    pixel: a pixel's sampling position depends on the vertex only inside that box."""
    corners = points[simplices]  # (T, 3, 2)
    lo = np.floor(corners.min(1) - 1.0)
    hi = np.ceil(corners.max(1) + 1.0)
    out = np.tile(np.array([w, h, 0, 0], np.float64), (len(points), 1))
    for k in range(3):
        np.minimum.at(out[:, 0], simplices[:, k], lo[:, 0])
        np.minimum.at(out[:, 1], simplices[:, k], lo[:, 1])
        np.maximum.at(out[:, 2], simplices[:, k], hi[:, 0])
        np.maximum.at(out[:, 3], simplices[:, k], hi[:, 1])
    out = np.clip(out, 0, [w, h, w, h])
    return out.astype(np.int64)
