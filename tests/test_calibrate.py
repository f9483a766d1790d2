"""flowact.train.calibrate (the recipe's last training step): the ear's calibrated predictions
have the world's mean and spread on the windows it measured, and nothing but the calibration changes."""

import numpy as np
import torch
import yaml
from safetensors.torch import load_file

from helpers import TINY


def test_calibration_gives_the_ears_predictions_the_worlds_mean_and_spread(tmp_path, capsys):
    from flowact import weights as W
    from flowact.config import load_preset
    from flowact.model import FlowActModel
    from flowact.train.calibrate import collect, main

    doc = yaml.safe_load(open(TINY))
    doc["lips"] = {"width": 8, "ear_width": 16}
    preset = tmp_path / "tiny-lips.yaml"
    preset.write_text(yaml.safe_dump(doc))
    torch.manual_seed(0)
    model = FlowActModel(load_preset(str(preset))).eval()
    W.save(model, tmp_path / "in.safetensors")

    weights = ["--weights", str(tmp_path / "in.safetensors")]
    run = ["--clips", "3", "--heldout", "1", "--max-gain", "1e6", "--seed", "5", "--threads", "1"]
    assert main(["--preset", str(preset), *weights, "--out", str(tmp_path / "out.safetensors"), *run]) == 0
    before, after = load_file(tmp_path / "in.safetensors"), load_file(tmp_path / "out.safetensors")
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before if not k.startswith("lips.cal_"))

    pred, true = collect(model, "train", 3, 5)  # the windows it measured (raw predictions: uncalibrated)
    cal = pred * after["lips.cal_scale"].numpy() + after["lips.cal_shift"].numpy()
    moves = true.std(0) > 1e-6
    assert moves.any()
    np.testing.assert_allclose(cal.mean(0), true.mean(0), atol=1e-4)
    np.testing.assert_allclose(cal.std(0)[moves], true.std(0)[moves], rtol=1e-3)
    assert "heldout_after" in capsys.readouterr().out

    # a preset without a lip refiner: one line, exit status 2, nothing written
    assert main(["--preset", TINY, *weights, "--out", str(tmp_path / "none.safetensors"), *run]) == 2
    assert "no lip refiner" in capsys.readouterr().err and not (tmp_path / "none.safetensors").exists()
