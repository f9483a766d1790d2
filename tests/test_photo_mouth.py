"""The inside of the mouth on real portraits (issue 32): what the opening is made of, read back from
the pixels of the rig's frames.

- A closed-mouth photo (matplotlib's grace_hopper.jpg, public domain) opened wide shows separate
  upper teeth under the upper lip (light, low chroma, a shadow between each two) over a dark
  red-brown cavity (red above green and blue, never black); the upper lip keeps its red and the
  lower lip its thickness (the jaw carries them).
- Teeth-showing sounds show more teeth; a grayscale photo's mouth stays gray.
- A photo that shows its own teeth (scikit-image's astronaut) keeps them, carried rigidly by the
  upper lip (its pixels, not stretched ones); pressed lips (p, b, m) meet over them in lip colour.
"""

from __future__ import annotations


import numpy as np
import pytest

from flowact.photo import face as F
from flowact.photo.rig import build_rig
from flowact.world.motion_vector import index, neutral_vector
from helpers import portrait


def _portrait(package: str, *parts: str) -> np.ndarray:
    return np.asarray(portrait(package, *parts).convert("RGB"))


@pytest.fixture(scope="module")
def grace():
    return build_rig(_portrait("matplotlib", "mpl-data", "sample_data", "grace_hopper.jpg"), 512)


@pytest.fixture(scope="module")
def astronaut():
    return build_rig(_portrait("skimage", "data", "astronaut.png"), 512)


def _pose(**mouth) -> np.ndarray:
    m = neutral_vector()
    for k, v in mouth.items():
        m[index(f"mouth_{k}")] = v
    return m


def _frames(rig, *poses):
    ref = neutral_vector()
    motion = np.stack(poses)
    frames = rig.render(motion, ref).astype(np.float32)
    moved = rig.deformer.vertices[None, :, :2] + rig.deformer.displace(motion - ref)
    return frames, moved


def _opening(moved: np.ndarray, x: int) -> tuple[float, float]:
    """The moved inner lips' y at column x (upper, lower)."""
    up, lo = moved[list(F.LIPS_INNER_UPPER)], moved[list(F.LIPS_INNER_LOWER)]
    return float(np.interp(x, *_sorted(up))), float(np.interp(x, *_sorted(lo)))


def _sorted(p):
    o = np.argsort(p[:, 0])
    return p[o, 0], p[o, 1]


def _middle_columns(moved: np.ndarray, share: float = 0.3) -> np.ndarray:
    c = moved[list(F.MOUTH_CORNERS)]
    mid, half = c[:, 0].mean(), abs(c[1, 0] - c[0, 0]) / 2
    return np.arange(int(mid - share * half), int(mid + share * half) + 1)


def _chroma(p: np.ndarray) -> np.ndarray:
    return p.max(-1) - p.min(-1)


def test_a_closed_mouth_opens_on_teeth_and_a_dark_red_cavity(grace):
    frames, moved = _frames(grace, _pose(), _pose(open=0.9, teeth=0.3))
    f = frames[1]
    teeth, cavity = [], []
    for x in _middle_columns(moved[1]):
        yu, yl = _opening(moved[1], x)
        assert yl - yu > 12, (x, yu, yl)  # wide open at 512 px
        teeth.append(f[int(yu) + 2 : int(yu) + 4, x])
        cavity.append(f[int(yu + 0.5 * (yl - yu)) : int(yl) - 3, x])
    teeth, cavity = np.concatenate(teeth), np.concatenate(cavity)
    t_lum, c_lum = teeth.mean(), cavity.mean(1)
    assert t_lum > 1.6 * c_lum.mean(), (t_lum, c_lum.mean())  # teeth are the light thing in the mouth
    assert _chroma(teeth).mean() < 0.5 * teeth.mean(), teeth.mean(0)  # off-white, not lip-coloured
    r, g, b = cavity.mean(0)
    assert r > 1.5 * g and r > 1.5 * b, (r, g, b)  # red-brown
    assert c_lum.min() > 12 and 20 < c_lum.mean() < 120, (c_lum.min(), c_lum.mean())  # dark, never a black box
    # separate teeth: along the row just under the upper lip, the shadows between them (a band would be flat)
    xs = _middle_columns(moved[1], 0.6)
    row = np.array([f[int(_opening(moved[1], x)[0]) + 3, x].mean() for x in xs])
    dips = [row[max(0, i - 4) : i + 5].max() - row[i] for i in range(len(row))]
    seams = [i for i in range(1, len(row) - 1) if row[i] < row[i - 1] and row[i] <= row[i + 1] and dips[i] >= 8]
    assert len(seams) >= 4, row.round()


def test_the_jaw_carries_the_lips_with_their_colour_and_thickness(grace):
    frames, moved = _frames(grace, _pose(), _pose(open=0.7))
    rest, opened = frames
    red = lambda p: p[..., 0] - 0.5 * (p[..., 1] + p[..., 2])  # noqa: E731
    up_rest, up_open, lo_rest, lo_open = [], [], [], []
    for x in _middle_columns(moved[1], 0.25):
        yu0, yl0 = _opening(moved[0], x)
        yu1, yl1 = _opening(moved[1], x)
        up_rest.append(red(rest[int(yu0) - 4 : int(yu0) - 1, x]).mean())  # the upper lip just above the parting
        up_open.append(red(opened[int(yu1) - 4 : int(yu1) - 1, x]).mean())
        # the lower lip's red rows below the parting (rest) and below the opening (open)
        lo_rest.append((red(rest[int(yl0) + 1 : int(yl0) + 25, x]) > 60).sum())
        lo_open.append((red(opened[int(yl1) + 1 : int(yl1) + 25, x]) > 60).sum())
    assert np.mean(up_open) > 0.75 * np.mean(up_rest), (np.mean(up_open), np.mean(up_rest))
    assert np.mean(lo_open) > 0.7 * np.mean(lo_rest) and np.mean(lo_rest) >= 3, (lo_open, lo_rest)


def test_teeth_showing_sounds_show_more_teeth(grace):
    frames, moved = _frames(grace, _pose(open=0.35, teeth=0.0), _pose(open=0.35, teeth=1.0))

    def light_rows(k):
        n = 0
        for x in _middle_columns(moved[k]):
            yu, yl = _opening(moved[k], x)
            col = frames[k, int(yu) : int(np.ceil(yl)) + 1, x]
            n += int((col.mean(1) > 120).sum())
        return n

    assert light_rows(1) > 1.3 * light_rows(0) > 0, (light_rows(0), light_rows(1))


def test_a_grayscale_photo_keeps_a_gray_mouth():
    gray = np.repeat(
        _portrait("matplotlib", "mpl-data", "sample_data", "grace_hopper.jpg").mean(2, keepdims=True), 3, 2
    )
    rig = build_rig(gray.astype(np.uint8), 512)
    frames, moved = _frames(rig, _pose(open=0.9, teeth=0.5))
    lips = moved[0, list(F.LIPS_OUTER)]
    (x0, y0), (x1, y1) = lips.min(0).astype(int), lips.max(0).astype(int)
    assert _chroma(frames[0, y0:y1, x0:x1]).max() <= 3


def test_a_photo_s_own_teeth_hang_rigidly_from_the_upper_lip(astronaut):
    frames, moved = _frames(astronaut, _pose(), _pose(open=0.6))
    rest, opened = frames
    diffs, spans = [], []
    for x in _middle_columns(moved[0]):
        yu0, yl0 = _opening(moved[0], x)
        yu1, _ = _opening(moved[1], x)
        n = int(yl0 - yu0) - 2  # the photo's own teeth at rest, under its upper lip
        if n < 3:
            continue
        a = rest[int(np.ceil(yu0)) + 1 : int(np.ceil(yu0)) + 1 + n, x]
        b = opened[int(np.ceil(yu1)) + 1 : int(np.ceil(yu1)) + 1 + n, x]
        diffs.append(np.abs(a - b).mean())
        spans.append(n)
    assert len(spans) >= 5, spans
    assert np.median(diffs) < 25, diffs  # the same pixels (to within the lip's sub-pixel lift), not a stretch


def test_pressed_lips_meet_in_lip_colour_over_a_photo_s_teeth(astronaut):
    frames, moved = _frames(astronaut, _pose(), _pose(closed=1.0, open=0.0))
    rest, pressed = frames
    seam = []
    for x in _middle_columns(moved[1]):
        yu, yl = _opening(moved[1], x)
        y = int(round(0.5 * (yu + yl)))
        seam.append(pressed[y - 1 : y + 2, x].mean(0))
        yu0, yl0 = _opening(moved[0], x)
    seam = np.array(seam)
    teeth = np.concatenate([rest[int(_opening(moved[0], x)[0]) + 2, x][None] for x in _middle_columns(moved[0])])
    assert seam.mean() < teeth.mean() - 40, (seam.mean(0), teeth.mean(0))  # no teeth between pressed lips
    assert (seam[:, 0] > seam[:, 2]).mean() > 0.8  # lip-coloured (red over blue)
