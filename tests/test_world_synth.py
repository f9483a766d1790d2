"""`flowact synth` writes real, deterministic clips with labels; the dataset reader reads them back."""

import json
import subprocess
import sys

import numpy as np
from typer.testing import CliRunner

from flowact.cli import app
from flowact.media.probe import probe
from flowact.world.dataset import SynthDataset

runner = CliRunner()


def _synth(out, *extra):
    return runner.invoke(
        app,
        [
            "synth",
            "--out",
            str(out),
            "--clips",
            "2",
            "--seconds",
            "1.6",
            "--size",
            "128x96",
            "--seed",
            "3",
            "--json",
            *extra,
        ],
    )


def test_synth_writes_clips_with_labels_and_reads_back(tmp_path):
    res = _synth(tmp_path / "a", "--workers", "2")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["clips"] == 2 and summary["frames"] == 80
    assert summary["render_fps_per_core"] > 0 and summary["bytes_per_clip_second"] > 1000
    ds = SynthDataset(tmp_path / "a")
    assert len(ds) == 2
    rec = ds[0]
    info = probe(rec.video)
    assert (info.video_codec, info.width, info.height, info.frames, info.pix_fmt) == ("h264", 128, 96, 40, "yuv420p")
    assert info.audio_codec == "aac" and abs(info.audio_duration - 1.6) < 0.1
    frames = rec.frames()
    assert frames.shape == (40, 96, 128, 3)
    ref = rec.reference()
    assert ref.shape == (96, 128, 3)
    assert np.abs(ref.astype(int) - frames[0].astype(int)).mean() > 0.5  # the reference is not frame 0
    arr = rec.arrays
    assert arr.mouth.shape == (40, 5) and arr.head.shape == (40, 3) and arr.joints.shape == (40, 6, 2)
    lab = rec.labels
    assert lab["timeline"][0]["start"] <= 0 and lab["timeline"][-1]["end"] >= 1.6
    assert all(s["prompt"] for s in lab["timeline"])
    assert len(rec.audio()) == 1.6 * 16000


def test_synth_is_deterministic_across_runs_and_workers(tmp_path):
    assert _synth(tmp_path / "a").exit_code == 0
    assert _synth(tmp_path / "b", "--workers", "2").exit_code == 0
    for name in ("clip_00000", "clip_00001"):
        assert (tmp_path / "a" / f"{name}.json").read_text() == (tmp_path / "b" / f"{name}.json").read_text()
        assert (tmp_path / "a" / f"{name}.wav").read_bytes() == (tmp_path / "b" / f"{name}.wav").read_bytes()
        assert (tmp_path / "a" / f"{name}.ref.png").read_bytes() == (tmp_path / "b" / f"{name}.ref.png").read_bytes()


def test_bad_synth_input_is_one_clear_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for args, needle in (
        (["--out", str(blocker)], str(blocker)),
        (["--out", str(tmp_path / "o"), "--size", "127x128"], "even"),
        (["--out", str(tmp_path / "o"), "--size", "big"], "WIDTHxHEIGHT"),
        (["--out", str(tmp_path / "o"), "--clips", "0"], "--clips"),
    ):
        proc = subprocess.run(
            [sys.executable, "-c", "from flowact.cli import main; main()", "synth", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode != 0
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0] and "Traceback" not in proc.stderr, proc.stderr
