"""scripts/decoder_mouth.py: the keep-out's target and loss, and a dry run that switches it on."""

import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import torch
from safetensors.torch import load_file

from helpers import SCRIPTS, load_script


def _module():
    return load_script("decoder_mouth")


def test_place_cells_mark_the_mouths_cells_in_every_frame_and_the_loss_weighs_them():
    mod = _module()
    place = np.zeros((32, 32), np.float32)
    place[9, 20] = 1  # one pixel of the mouth: cell (2, 5) of the 8x8 grid (4 px per cell)
    windows = [SimpleNamespace(place=place), SimpleNamespace(place=np.zeros_like(place))]
    cells = mod.place_cells(windows, (8, 8), 3, "cpu")
    assert cells.shape == (6, 1, 8, 8)
    assert all(float(cells[i, 0, 2, 5]) == 1 and float(cells[i].sum()) == 1 for i in range(3))
    assert float(cells[3:].sum()) == 0
    right = torch.where(cells > 0, 4.0, -4.0)
    bce_right, inside, outside = mod.map_loss(right, cells)
    assert inside > 0.98 and outside < 0.02
    miss = right.clone()
    miss[:3, 0, 2, 5] = -4.0  # missing the mouth costs POS_WEIGHT times a false alarm elsewhere
    alarm = right.clone()
    alarm[:3, 0, 0, 0] = 4.0
    extra_miss = float(mod.map_loss(miss, cells)[0] - bce_right)
    extra_alarm = float(mod.map_loss(alarm, cells)[0] - bce_right)
    assert abs(extra_miss / extra_alarm - mod.POS_WEIGHT) < 1e-3


def test_dry_run_switches_the_keep_out_on_only_after_the_map_trains(tmp_path):
    def run(map_steps: int) -> dict:
        out = tmp_path / f"vae{map_steps}.safetensors"
        cmd = [sys.executable, str(SCRIPTS / "decoder_mouth.py"), "--random-weights", "--map-steps", str(map_steps)]
        cmd += ["--draw-steps", "1", "--batch", "1", "--clips", "1", "--eval-seconds", "1", "--threads", "1"]
        cmd += ["--vae-out", str(out)]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-2000:]
        assert '"phase": "draw"' in res.stdout
        return load_file(str(out))

    on = run(2)
    assert float(on["decoder.mouth_on"]) == 1.0
    off = run(0)
    assert float(off["decoder.mouth_on"]) == 0.0


def test_open_weights_cover_only_the_frames_where_the_mouth_is_open():
    mod = _module()
    mouth = np.zeros((4, 16, 16), np.float32)
    mouth[2, 8, 8] = 1  # open in the window's third frame only
    w = mod.open_weights([SimpleNamespace(mouth=mouth)], torch.zeros(1, 3, 5, 16, 16))
    assert w.shape == (1, 1, 5, 16, 16)
    assert float(w[0, 0, 3].sum()) == 49 and float(w[0, 0, 3, 5, 5]) == 1  # that frame, dilated 3 px
    assert float(w[0, 0, :3].sum()) == 0 and float(w[0, 0, 4].sum()) == 0  # the reference and closed frames
