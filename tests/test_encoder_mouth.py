"""scripts/encoder_mouth.py: the mouth's region is weighted in every frame, open or closed."""

from types import SimpleNamespace

import numpy as np
import torch

from helpers import load_script


def _module():
    return load_script("encoder_mouth")


def test_region_covers_every_frame_where_the_mouth_opens_anywhere():
    mod = _module()
    frames, size = 5, 32
    mouth = np.zeros((frames, size, size), np.float32)
    mouth[3, 10, 12] = 1  # the mouth opens in one frame only, one pixel
    other = np.zeros_like(mouth)  # a window where it never opens
    x = torch.zeros(2, 3, 1 + frames, size, size)
    w = mod.region_weights([SimpleNamespace(mouth=mouth), SimpleNamespace(mouth=other)], x)
    assert w.shape == (2, 1, 1 + frames, size, size)
    assert float(w[:, :, 0].abs().sum()) == 0  # never on the reference frame
    for t in range(1, 1 + frames):  # closed frames count as much as the open one
        region = w[0, 0, t].numpy()
        assert region[10, 12] == 1 and region[7, 9] == 1 and region[13, 15] == 1  # dilated by 3 px
        assert region[6, 12] == 0 and region[10, 16] == 0
        assert region.sum() == 49
    assert float(w[1].sum()) == 0
