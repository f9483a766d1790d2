"""The judge reads the mouth from a crop at a place: the crop must be that place, at any size."""

import numpy as np
import torch

from flowact.judge.frames import label_to_input
from flowact.judge.net import MOUTH_CROP, MOUTH_SPAN, FrameJudge


def test_crop_is_centred_on_the_place_and_scaled_by_the_mouth():
    frames = torch.zeros(2, 3, 128, 128) + 0.5
    frames[0, :, 40:44, 70:74] = 1.0  # a bright 4x4 square centred at (72, 42)
    frames[1, :, 90:98, 20:28] = 0.0  # a dark 8x8 square centred at (24, 94)
    place = torch.tensor([[72 / 128, 42 / 128, 4 / 128 / MOUTH_SPAN], [24 / 128, 94 / 128, 8 / 128 / MOUTH_SPAN]])
    crop = FrameJudge().crop(frames, place)  # half side: 4 and 8 pixels, so each square fills half the crop
    assert crop.shape == (2, 3, MOUTH_CROP, MOUTH_CROP)
    q = MOUTH_CROP // 4 + 2  # the middle of the square, clear of its blended edge
    centre0, centre1 = crop[0, 0, q:-q, q:-q], crop[1, 0, q:-q, q:-q]
    assert centre0.mean() > 0.45 and crop[0, 0, :2].mean().abs() < 0.05  # bright centre, grey border
    assert centre1.mean() < -0.45 and crop[1, 0, :, :2].mean().abs() < 0.05


def test_places_map_from_any_frame_shape_to_the_input_square():
    # a square frame: label coordinates are the input's
    p = np.array([[0.4, 0.6, 0.05]])
    assert np.allclose(label_to_input(p, 128, 128), p)
    # a wide frame keeps its centre square: label x is already relative to the height
    assert np.allclose(label_to_input(p, 224, 128), p)
    # a tall frame (portrait) loses its top and bottom: y and the scale change
    q = label_to_input(p, 100, 200)  # the centre square is rows 50..150 of 200
    assert np.allclose(q[0], [0.5 + (0.4 - 0.5) * 2, (0.6 * 200 - 50) / 100, 0.1])
