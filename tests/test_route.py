"""The route a picture takes (photo vs drawn), photo presets, and the photo inputs' framing."""

import re
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from flowact.config import PhotoPreset, load_preset
from flowact.errors import FlowactError
from flowact.media.image import fit_within
from flowact.routes import PhotoRoute, ToonRoute, route_of
from flowact.routes.choose import flat_share, looks_like_photo, route_preset

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _jpeg(image: np.ndarray, quality: int = 80) -> np.ndarray:
    b = io.BytesIO()
    Image.fromarray(image).save(b, "JPEG", quality=quality)
    return np.asarray(Image.open(b).convert("RGB"))


@pytest.mark.parametrize("name", ["character_1.png", "character_2.png", "character_3.png", "character_4.png"])
def test_drawn_characters_are_not_photos_even_as_jpeg(name):
    drawn = np.asarray(Image.open(EXAMPLES / name).convert("RGB"))
    assert not looks_like_photo(drawn) and not looks_like_photo(_jpeg(drawn))


@pytest.mark.parametrize("seed", [90210, 8])
def test_a_world_character_in_a_narrow_range_of_brightness_is_drawn(seed):
    """Soft shading in few levels: stretched to its range it breaks into steps (0.42 / 0.53), as it is
    it is flat (0.88 / 0.89); it was routed to the photo route for a while (2026-12-06)."""
    from flowact.world.clip import make_clip

    drawn = make_clip(seed, 1.0, 128, 128).reference()
    assert flat_share(drawn, stretched=True) < 0.6 and not looks_like_photo(drawn)


def test_photographs_are_photos_even_small():
    import skimage.data

    for photo in (skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee()):
        assert looks_like_photo(photo), flat_share(photo)
        small = np.asarray(Image.fromarray(photo).resize((128, 128), Image.Resampling.LANCZOS))
        assert looks_like_photo(small)


def test_route_follows_the_picture_unless_forced(tmp_path):
    assert route_preset("auto", EXAMPLES / "astronaut.jpg")[0] == "photo-512"
    assert route_preset("auto", EXAMPLES / "character_1.png")[0] == "toon-128"
    assert route_preset("toon-128", EXAMPLES / "astronaut.jpg") == ("toon-128", "--preset")
    with pytest.raises(FlowactError, match="nope.png: image file not found"):
        route_preset("auto", tmp_path / "nope.png")


def test_photo_preset_loads_and_validates(tmp_path):
    p = load_preset("photo-512")
    assert isinstance(p, PhotoPreset) and p.frames_per_chunk == 8 and p.video.width == 512
    assert route_of(p) is PhotoRoute and route_of(load_preset("toon-128")) is ToonRoute
    bad = tmp_path / "odd.yaml"
    bad.write_text("name: odd\nroute: photo\ndescription: x\nvideo: {width: 511, height: 512}\n")
    with pytest.raises(FlowactError, match="odd.yaml: key 'video' size 511x512 must be positive and even"):
        load_preset(str(bad))
    bad.write_text("name: odd\nroute: cartoon\ndescription: x\nvideo: {width: 512, height: 512}\n")
    with pytest.raises(FlowactError, match="key 'route' must be toon or photo"):
        load_preset(str(bad))


def test_photo_framing_is_kept_scaled_down_never_up(tmp_path):
    wide = tmp_path / "wide.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (301, 1001, 3), np.uint8)).save(wide)
    a = fit_within(wide, 512, 512)
    assert a.shape == (152, 512, 3)  # aspect kept (1001:301), sides even
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((101, 77, 3), np.uint8)).save(small)
    assert fit_within(small, 512, 512).shape == (100, 76, 3)  # not upscaled, trimmed to even
    assert fit_within(small, 512, 512, min_side=256).shape == (334, 256, 3)  # a tiny one: up to 256, aspect kept
    assert fit_within(wide, 512, 512, min_side=256).shape == (152, 512, 3)  # no further than the preset allows


def test_a_tiny_face_crop_makes_a_watchable_video(tmp_path):
    """A 112 px face crop of a real portrait takes the photo route at 256 x 256, its face found."""
    from flowact.routes import route_of

    crop = tmp_path / "crop.png"
    Image.open(EXAMPLES / "astronaut.jpg").convert("RGB").crop((150, 40, 330, 220)).resize((112, 112)).save(crop)
    p = load_preset("photo-512")
    picture, face = route_of(p).load_picture(p, crop)
    assert picture.shape == (256, 256, 3) and face.score > 0.5


def test_options_that_do_not_apply_to_the_photo_route_are_refused_not_dropped():
    from flowact.routes import load_route

    for options, said in [
        ({"dtype": "bfloat16"}, "--dtype bfloat16 does not apply to the photo route (photo-512): its motion engine"),
        ({"lips": False}, "--no-lips does not apply to the photo route (photo-512): it has no lip refiner"),
        ({"int8": "on"}, "--int8 on does not apply to the photo route"),
        ({"device": "cuda"}, "--device cuda does not apply to the photo route"),
    ]:
        with pytest.raises(FlowactError, match=re.escape(said)):
            load_route("photo-512", **options)
    assert load_route("photo-512", dtype="float32", int8="off").conditions().startswith("CPU")  # what it is anyway
