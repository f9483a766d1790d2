import dataclasses

import pytest

from flowact.config import load_preset, preset_names
from flowact.errors import FlowactError
from flowact.stream.sampler import shifted_timesteps
from helpers import TINY


def test_bundled_presets_load_as_frozen_configs():
    assert {"toon-128", "toon-256", "r1-480p"} <= set(preset_names())
    p = load_preset("toon-128")
    assert (p.video.width, p.video.height, p.video.fps) == (128, 128, 25)
    assert p.latent_hw == (16, 16) and p.tokens_per_latent == 64 and p.frames_per_chunk == 8
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.video.width = 3
    r1 = load_preset("r1-480p")
    assert (r1.video.width, r1.video.height) == (832, 480) and r1.tokens_per_latent == 1560


def test_schedules_shifted_and_the_default_distilled_to_one_step():
    assert load_preset("toon-128").sampler_timesteps() == (1.0, 0.0)  # distilled to one step (docs/motion-video.md)
    ts = load_preset("r1-480p").sampler_timesteps()
    assert len(ts) == 4 and ts[0] == 1.0 and ts[-1] == 0.0
    assert all(b < a for a, b in zip(ts, ts[1:]))
    # the shift spends more of the schedule near the noisy end than a uniform one would
    assert ts[1] > 2 / 3 and ts[2] > 1 / 3
    assert shifted_timesteps(4, 1.0) == [1.0, 0.75, 0.5, 0.25, 0.0]


def _write(tmp_path, text):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return str(path)


def test_unknown_key_is_named(tmp_path):
    text = open(TINY).read().replace("stream: {", "stream: {chunk_latent: 3, ")
    with pytest.raises(FlowactError, match="unknown key 'stream.chunk_latent'"):
        load_preset(_write(tmp_path, text))


def test_wrong_type_and_bad_values_are_named(tmp_path):
    base = open(TINY).read()
    with pytest.raises(FlowactError, match="'model.depth' must be an integer"):
        load_preset(_write(tmp_path, base.replace("depth: 2,", "depth: two,")))
    with pytest.raises(FlowactError, match="model.rope_axes"):
        load_preset(_write(tmp_path, base.replace("[4, 6, 6]", "[4, 6, 8]")))
    with pytest.raises(FlowactError, match="sampler.timesteps"):
        load_preset(
            _write(
                tmp_path, base.replace("sampler: {steps: 3, shift: 3.0}", "sampler: {timesteps: [1.0, 0.7, 0.8, 0.0]}")
            )
        )
    with pytest.raises(FlowactError, match="missing required key 'video'"):
        load_preset(_write(tmp_path, "\n".join(line for line in base.splitlines() if not line.startswith("video"))))
    with pytest.raises(FlowactError, match="invalid YAML"):
        load_preset(_write(tmp_path, "video: [unclosed"))


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(FlowactError, match="unknown preset 'nope'.*toon-128"):
        load_preset("nope")


def test_a_frame_rate_other_than_25_is_refused_naming_the_key(tmp_path):
    from pathlib import Path

    bad = tmp_path / "fps30.yaml"
    bad.write_text(Path(TINY).read_text().replace("fps: 25", "fps: 30"))
    with pytest.raises(FlowactError, match=r"video.fps.*must be 25 \(got 30\)"):
        load_preset(str(bad))
