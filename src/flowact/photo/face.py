"""Face analysis of a photo: MediaPipe's face detector and 468-point face mesh, run with LiteRT.

The `.tflite` models (Apache-2.0) ship in flowact's wheel (photo/models/, with their licence;
photo/face_models.py puts them there), so an installed wheel renders a photograph. Detection: an SSD over a
letterboxed square (short-range model for portraits, full-range for small faces); its eye
keypoints level the crop that the landmark model reads. `track` skips detection and crops around
a previous mesh, which is what a video wants.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import FlowactError

# Landmark index groups of the canonical 468-point MediaPipe face mesh (its topology is public:
# the canonical face model in the MediaPipe repository). Each group was checked by drawing it
# on skimage's astronaut photo (tests/test_photo_face.py checks their geometric order). "Right"
# and "left" are the subject's, so RIGHT_* lie on the image's left.
LIPS_OUTER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146)
LIPS_INNER_UPPER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)  # corner to corner, left to right in image
LIPS_INNER_LOWER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
LIPS_OUTER_UPPER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
LIPS_OUTER_LOWER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
MOUTH_CORNERS = (61, 291)
RIGHT_EYE_UPPER = (33, 246, 161, 160, 159, 158, 157, 173, 133)  # outer corner -> inner corner
RIGHT_EYE_LOWER = (33, 7, 163, 144, 145, 153, 154, 155, 133)
LEFT_EYE_UPPER = (263, 466, 388, 387, 386, 385, 384, 398, 362)
LEFT_EYE_LOWER = (263, 249, 390, 373, 374, 380, 381, 382, 362)
RIGHT_BROW = (46, 53, 52, 65, 55, 70, 63, 105, 66, 107)
LEFT_BROW = (276, 283, 282, 295, 285, 300, 293, 334, 296, 336)
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152,
             148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)  # fmt: skip
JAW = FACE_OVAL[9:30]  # ear to ear under the chin (323 ... 93)
NOSE_TIP = 1
NOSE_BRIDGE = (168, 6, 197, 195, 5, 4, 1)
CHIN = 152
FOREHEAD = 10


@dataclass(frozen=True)
class FaceMesh:
    """468 face landmarks of one image. points: (468, 3) float32 image pixels (x right, y down,
    z depth in the same pixel scale, negative towards the camera); box: (x0, y0, x1, y1) of the
    face detection (or of the tracked crop); score: face presence 0..1."""

    points: np.ndarray
    box: tuple[float, float, float, float]
    score: float
    which: str = ""  # how it was chosen: "the most confident face", "face 2 of 3, left to right"

    @property
    def eye_centres(self) -> np.ndarray:
        """(2, 2): the subject's right eye (image left) then left eye, mean of each lid contour."""
        p = self.points[:, :2]
        return np.stack(
            [p[list(RIGHT_EYE_UPPER + RIGHT_EYE_LOWER)].mean(0), p[list(LEFT_EYE_UPPER + LEFT_EYE_LOWER)].mean(0)]
        )

    @property
    def inter_ocular(self) -> float:
        e = self.eye_centres
        return float(np.linalg.norm(e[1] - e[0]))


# ---------------------------------------------------------------- models


def data_dir() -> Path:
    """The folder of the face models (in the package: photo/face_models.py)."""
    from . import face_models as M

    if M.missing():
        raise FlowactError(f"MediaPipe's face models are missing from this install: {M.FETCH}", path=M.FOLDER)
    return M.FOLDER


@functools.cache
def _interpreter(name: str):
    from ai_edge_litert.interpreter import Interpreter

    # LiteRT's runtime announces its XNNPACK delegate on the process's stderr (a C-level write):
    # a render's stderr is flowact's own lines, so that one goes to /dev/null
    with _quiet_stderr():
        it = Interpreter(model_path=str(data_dir() / f"{name}.tflite"), num_threads=1)
        it.allocate_tensors()
    return it


@contextlib.contextmanager
def _quiet_stderr():
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _invoke(name: str, x: np.ndarray) -> list[np.ndarray]:
    it = _interpreter(name)
    it.set_tensor(it.get_input_details()[0]["index"], x[None].astype(np.float32))
    it.invoke()
    return [it.get_tensor(o["index"]) for o in it.get_output_details()]


# ---------------------------------------------------------------- detection

# SSD anchor layouts (MediaPipe's documented options for the two BlazeFace models): the short-range
# model has 4 layers at strides 8, 16, 16, 16 with 2 anchors per layer (aspect 1 plus the
# interpolated scale); layers of equal stride share one grid. Full range: one 48x48 grid, 1 anchor.
# With fixed anchor size every anchor is 1x1, so only centres matter.
_DETECTORS = {
    "face_detection_short_range": (128, ((8, 2), (16, 6))),
    "face_detection_full_range": (192, ((4, 1),)),
}


@functools.cache
def _anchors(name: str) -> np.ndarray:
    size, grids = _DETECTORS[name]
    out = []
    for stride, per_cell in grids:
        n = size // stride
        ys, xs = np.meshgrid((np.arange(n) + 0.5) / n, (np.arange(n) + 0.5) / n, indexing="ij")
        c = np.stack([xs.ravel(), ys.ravel()], 1)
        out.append(np.repeat(c, per_cell, axis=0))
    return np.concatenate(out).astype(np.float32)


def _affine_crop(image: np.ndarray, centre, side: float, angle: float, out: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample a square of `side` image pixels around `centre`, rotated by `angle` (radians, the
    image direction that becomes +x), into (out, out, 3) float32 0..255. Also returns the 2x3
    matrix mapping crop pixels to image pixels."""
    s = side / out
    c, si = np.cos(angle) * s, np.sin(angle) * s
    h = out / 2
    m = np.array([[c, -si, centre[0] - c * h + si * h], [si, c, centre[1] - si * h - c * h]])
    img = Image.fromarray(image).transform(
        (out, out), Image.Transform.AFFINE, tuple(m.ravel()), Image.Resampling.BILINEAR
    )
    return np.asarray(img, np.float32), m


def _detect_in(image: np.ndarray, name: str, centre, side: float, threshold: float):
    """The best face of detector `name` in the square of `side` image pixels around `centre`
    (letterboxed with black where it leaves the image): (box, keypoints, score) or None."""
    found = _detect_all_in(image, name, centre, side, threshold, most=1)
    return found[0] if found else None


def _detect_all_in(image: np.ndarray, name: str, centre, side: float, threshold: float, most: int = 64) -> list:
    """Every face of detector `name` in that square, most confident first: [(box, keypoints, score)]."""
    size = _DETECTORS[name][0]
    crop, m = _affine_crop(image, centre, side, 0.0, size)
    reg, cls = _invoke(name, crop / 127.5 - 1.0)
    if reg.shape[-1] != 16:
        reg, cls = cls, reg
    score = 1 / (1 + np.exp(-np.clip(cls[0, :, 0], -60, 60)))
    keep = score > threshold
    if not keep.any():
        return []
    a = _anchors(name)[keep]
    r = reg[0, keep] / size
    sc = score[keep]
    cxy = a + r[:, :2]
    boxes = np.concatenate([cxy - r[:, 2:4] / 2, cxy + r[:, 2:4] / 2], 1)
    kps = a[:, None] + r[:, 4:].reshape(-1, 6, 2)
    to_img = lambda p: p @ m[:, :2].T + m[:, 2]  # noqa: E731
    area = np.prod(boxes[:, 2:] - boxes[:, :2], 1)
    left, out = np.ones(len(sc), bool), []
    while left.any() and len(out) < most:
        best = int(np.argmax(np.where(left, sc, -1.0)))
        # weighted suppression: average the detections that overlap the best one
        lo = np.maximum(boxes[best, :2], boxes[:, :2])
        hi = np.minimum(boxes[best, 2:], boxes[:, 2:])
        inter = np.prod(np.clip(hi - lo, 0, None), 1)
        iou = inter / (area[best] + area - inter + 1e-9)
        near = left & (iou > 0.3)
        wgt = sc * near
        wgt = wgt / wgt.sum()
        box = (wgt[:, None] * boxes).sum(0) * size
        kp = (wgt[:, None, None] * kps).sum(0) * size
        out.append((np.concatenate([to_img(box[:2]), to_img(box[2:])]), to_img(kp), float(sc[best])))
        left &= ~near
    return out


def faces(image: np.ndarray, threshold: float = 0.5) -> list:
    """Every face in an (H, W, 3) uint8 picture, numbered left to right: [(box, keypoints, score)]
    (a group photo: `--face N` picks the N-th). The whole picture with both detectors, then tiles of
    half and a third of the shorter side (small faces); one face seen twice is kept once."""
    h, w = image.shape[:2]
    found = [d for name in _DETECTORS for d in _detect_all_in(image, name, (w / 2, h / 2), max(h, w), threshold)]
    for frac in (0.5, 1 / 3):
        side = min(h, w) * frac
        if side < 48:
            break
        for cy in np.arange(side / 2, h - side / 2 + 1, side / 2):
            for cx in np.arange(side / 2, w - side / 2 + 1, side / 2):
                found += _detect_all_in(image, "face_detection_short_range", (cx, cy), side, threshold)
    kept: list = []
    for d in sorted(found, key=lambda d: -d[2]):
        # a face counts when the detector is sure of it (the tiles' many looks make weak false ones: a
        # badge, a flag); the best detection counts in any case, as `detect` would take it
        if (d[2] >= LISTED or not kept) and all(_iou(d[0], k[0]) < 0.3 for k in kept):
            kept.append(d)
    return sorted(kept, key=lambda d: d[0][0] + d[0][2])


LISTED = 0.75  # the score at which a detection counts as one of a group photo's faces


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    lo, hi = np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])
    inter = float(np.prod(np.clip(hi - lo, 0, None)))
    return inter / (float(np.prod(a[2:] - a[:2])) + float(np.prod(b[2:] - b[:2])) - inter + 1e-9)


SURE = 0.8  # a detection this confident on the whole picture ends the search


def detect(image: np.ndarray, threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray, float] | None:
    """Best face in an (H, W, 3) uint8 image: (box (4,) x0 y0 x1 y1, keypoints (6, 2), score), image
    pixels, or None. Keypoints: right eye, left eye, nose tip, mouth, right ear, left ear.

    The whole picture first (both detectors); a face that is small in it (a person further from the
    camera, a wide shot) is found in overlapping square tiles of half and a third of the shorter
    side, where it is large enough for the short-range detector."""
    h, w = image.shape[:2]
    found = None
    for name in _DETECTORS:
        d = _detect_in(image, name, (w / 2, h / 2), max(h, w), threshold)
        if d is not None and (found is None or d[2] > found[2]):
            found = d
    if found is not None and found[2] >= SURE:
        return found
    for frac in (0.5, 1 / 3):
        side = min(h, w) * frac
        if side < 48:
            break
        xs = np.arange(side / 2, w - side / 2 + 1, side / 2)
        ys = np.arange(side / 2, h - side / 2 + 1, side / 2)
        for cy in ys:
            for cx in xs:
                d = _detect_in(image, "face_detection_short_range", (cx, cy), side, threshold)
                if d is not None and (found is None or d[2] > found[2]):
                    found = d
        if found is not None and found[2] >= SURE:
            break
    return found


# ---------------------------------------------------------------- landmarks

LANDMARK_SIZE = 192


def _landmarks(image: np.ndarray, centre, side: float, angle: float) -> tuple[np.ndarray, float]:
    crop, m = _affine_crop(image, centre, side, angle, LANDMARK_SIZE)
    outs = _invoke("face_landmark", crop / 255.0)
    raw = next(o for o in outs if o.size == 1404).reshape(468, 3)
    logit = float(next(o for o in outs if o.size == 1).ravel()[0])
    pts = np.empty((468, 3), np.float32)
    pts[:, :2] = raw[:, :2] @ m[:, :2].T + m[:, 2]
    pts[:, 2] = raw[:, 2] * side / LANDMARK_SIZE
    return pts, 1 / (1 + np.exp(-logit))


def analyse(
    image: np.ndarray, name: str | Path = "photo", min_presence: float = 0.5, face: int | None = None
) -> FaceMesh:
    """Detect the face in an (H, W, 3) uint8 photo and fit the 468-point mesh: the most confident face,
    or with `face` the N-th (1-based) of `faces`, numbered left to right. Raises FlowactError naming
    `name` when there is no face (or no N-th)."""
    image = np.ascontiguousarray(image[..., :3], dtype=np.uint8)
    which = "the most confident face"
    if face is None:
        found = detect(image)
    else:
        every = faces(image)
        if not 1 <= face <= len(every):
            raise FlowactError(f"--face {face}: {len(every)} face(s) found, numbered 1 to {len(every)} left to right",
                               path=name)  # fmt: skip
        found, which = every[face - 1], f"face {face} of {len(every)}, left to right"
    if found is None:
        raise _no_face(name)
    box, kp, score = found
    centre = (box[:2] + box[2:]) / 2
    eyes = kp[1] - kp[0]
    angle = float(np.arctan2(eyes[1], eyes[0]))
    side = float(max(box[2] - box[0], box[3] - box[1]) * 1.5)
    pts, presence = _landmarks(image, centre, side, angle)
    if presence < min_presence:
        raise _no_face(name)
    # a second pass around the mesh itself centres the crop the way the landmark model was trained
    pts, presence2 = _landmarks(image, *_roi_from_points(pts))
    if presence2 >= presence:
        presence = presence2
    else:
        pts = _landmarks(image, centre, side, angle)[0]
    if turn(pts) > PROFILE:
        raise FlowactError(
            "the face is seen nearly in profile: the photo route moves faces turned up to ~45 degrees from the "
            "camera (use a photo where both eyes face it)",
            path=name,
        )
    return FaceMesh(pts, tuple(float(v) for v in box), float(min(score, presence)), which)


# The mesh's own depth reads a head's turn low (a head turned ~40 degrees measures ~23, scikit-image's
# camera.png, a man seen nearly in profile, 50): past this the mesh is a frontal face forced onto a profile,
# and its warp drags what lies beside the face (his camera) with the head.
PROFILE = 40.0


def turn(points: np.ndarray) -> float:
    """How far the head is turned left or right (yaw, degrees) from the depth between the outer eye corners."""
    e = points[263] - points[33]
    return float(abs(np.degrees(np.arctan2(e[2], np.hypot(e[0], e[1])))))


def _roi_from_points(pts: np.ndarray, scale: float = 1.5) -> tuple[np.ndarray, float, float]:
    p = pts[:, :2]
    lo, hi = p.min(0), p.max(0)
    e = p[263] - p[33]
    return (lo + hi) / 2, float(max(hi - lo) * scale), float(np.arctan2(e[1], e[0]))


def track(image: np.ndarray, previous: FaceMesh) -> FaceMesh:
    """Refit the mesh on a video frame in a crop around the previous frame's mesh (no detection)."""
    centre, side, angle = _roi_from_points(previous.points)
    pts, presence = _landmarks(np.ascontiguousarray(image[..., :3], dtype=np.uint8), centre, side, angle)
    lo, hi = pts[:, :2].min(0), pts[:, :2].max(0)
    return FaceMesh(pts, (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])), float(presence))


def _no_face(name) -> FlowactError:
    return FlowactError(
        "no face found (the photo route needs a face, at least ~15 px between the eyes at the output size: "
        "crop a wide shot closer; --preset toon-128 for a drawn character)",
        path=name,
    )
