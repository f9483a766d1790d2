"""The photo rig: zero motion gives the photo back, frames are deterministic and even-sized,
and the motion numbers move what they name, as the face model reads it back from the frames."""

import numpy as np
import pytest
from skimage import data

from flowact.errors import FlowactError
from flowact.photo import build_rig
from flowact.photo.measure import envelope, lag_correlation, measure_frames
from flowact.world.motion_vector import index, neutral_vector


@pytest.fixture(scope="module")
def rig():
    return build_rig(data.astronaut())


def _motion(n, **frames_values):
    m = np.tile(neutral_vector(), (n, 1))
    for key, (frames, value) in frames_values.items():
        m[frames, index(key)] = value
    return m


def test_zero_motion_is_the_photo(rig):
    out = rig.render(np.tile(neutral_vector(), (3, 1)))
    assert out.shape == (3, 512, 512, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(np.float32) - data.astronaut()).mean() < 1.0


def test_deterministic(rig):
    m = _motion(4, mouth_open=(slice(1, 3), 0.7), head_yaw=(slice(2, 4), 0.3), blink=(3, 1.0))
    assert np.array_equal(rig.render(m), rig.render(m))


def test_passes_halves_and_one_call_draw_the_same(rig, monkeypatch):
    """However the frames are cut (passes of 1 or 4 frames, rows warped in two halves side by side or in
    one part, the mouth painted once a call), the pixels are the same, and the mouth does open."""
    import flowact.photo.rig as R

    m = _motion(6, mouth_open=(slice(1, 6), 0.6), mouth_teeth=(slice(3, 5), 0.8), head_yaw=(slice(2, 6), 0.25))
    m[:, index("body_sway")] = np.linspace(-0.01, 0.01, 6)
    halves = rig.render(m)
    assert (256 * 512) * 4 >= R.SPLIT_PIXELS  # the astronaut's moving box is split at these settings
    monkeypatch.setattr(R, "SPLIT_PIXELS", 1 << 40)
    whole = rig.render(m)
    frame_by_frame = np.concatenate([rig.render(m[i : i + 1]) for i in range(len(m))])
    by_one = rig.render(m, chunk=1)
    assert np.array_equal(halves, whole) and np.array_equal(whole, frame_by_frame) and np.array_equal(whole, by_one)
    assert np.abs(whole[3].astype(int) - whole[0]).mean() > 1.0  # something moved


def test_framing_scaled_and_even():
    photo = data.astronaut()[:301, 40:297]  # odd sides
    r = build_rig(photo, size=200)
    w, h = r.size
    assert max(w, h) <= 200 and w % 2 == 0 and h % 2 == 0
    assert r.render(neutral_vector()[None]).shape == (1, h, w, 3)


def test_no_face_photo_raises(tmp_path):
    path = tmp_path / "face.png"
    from PIL import Image

    Image.fromarray(np.full((200, 160, 3), 128, np.uint8)).save(path)
    with pytest.raises(FlowactError, match=r"face\.png: no face found"):
        build_rig(path)


def test_open_mouth_reads_as_open(rig):
    m = _motion(10, mouth_open=(slice(4, 8), 0.8), mouth_closed=(slice(4, 8), 0.0))
    gap = measure_frames(rig.render(m), data.astronaut()).lip_gap
    rest, open_ = np.r_[gap[:4], gap[8:]], gap[4:8]
    assert open_.min() > rest.max() + 0.05, gap


def test_blink_closes_the_eyes(rig):
    m = _motion(8, blink=(slice(4, 7), 1.0))
    frames = rig.render(m)
    eye = measure_frames(frames, data.astronaut()).eye_open
    # the 468-point model reads closed lids only weakly (it stays near its prior), so its drop is
    # small; the pixels say it plainly: the dark iris and lashes are covered by lid skin
    assert eye[4:7].mean() < eye[:4].mean() - 0.005, eye
    from flowact.photo import face as F

    p = rig.mesh.points
    ids = list(F.RIGHT_EYE_UPPER + F.RIGHT_EYE_LOWER + F.LEFT_EYE_UPPER + F.LEFT_EYE_LOWER)
    (x0, y0), (x1, y1) = p[ids, :2].min(0).astype(int), p[ids, :2].max(0).astype(int)
    dark = (frames[:, y0 : y1 + 1, x0 : x1 + 1].mean(-1) < 90).mean((1, 2))
    assert dark[4:7].max() < 0.75 * dark[:4].min(), dark


def test_envelope_and_lag():
    t = np.arange(16000 * 2) / 16000
    loud = (np.sin(2 * np.pi * 2 * t) > 0).astype(np.float32)
    env = envelope(loud * np.sin(2 * np.pi * 200 * t), fps=25)
    assert len(env) == 50 and env.max() > 0.5 and env.min() < 0.05
    r0, lag, r = lag_correlation(env, np.roll(env, 3), 5)
    assert lag == 3 and r > 0.99 and r0 < r
