"""Weight sources: local file, bundled, hub cache (offline, on files made here), random."""

import json
import time

import pytest
import torch

from flowact import weights as W
from flowact.config import load_preset
from flowact.errors import FlowactError
from flowact.model import FlowActModel
from helpers import TINY

ZEROS = "0" * 64
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _saved(tmp_path, seed=3):
    model = FlowActModel(load_preset(TINY))
    model.init_random(seed)
    return model, W.save(model, tmp_path / "tiny.safetensors")


def _preset_with(tmp_path, weights_yaml: str):
    path = tmp_path / "hubbed.yaml"
    path.write_text(open(TINY).read() + weights_yaml)
    return load_preset(str(path))


def _fake_hub_cache(tmp_path, repo: str, filename: str, payload: bytes):
    root = tmp_path / "hub" / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(COMMIT)
    snap = root / "snapshots" / COMMIT
    snap.mkdir(parents=True)
    (snap / filename).write_bytes(payload)
    return str(tmp_path / "hub")


def test_local_weights_roundtrip_exactly(tmp_path):
    model, path = _saved(tmp_path)
    src = W.resolve(load_preset(TINY), weights=path)
    assert src.kind == "local"
    other = FlowActModel(load_preset(TINY))
    W.load_into(other, src)
    for (k, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items()):
        assert torch.equal(a, b), k


def test_local_weights_errors(tmp_path):
    p = load_preset(TINY)
    with pytest.raises(FlowactError, match="weights file not found"):
        W.resolve(p, weights=tmp_path / "none.safetensors")
    pt = tmp_path / "w.pt"
    pt.write_bytes(b"x")
    with pytest.raises(FlowactError, match="must be a .safetensors file"):
        W.resolve(p, weights=pt)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(FlowactError, match="junk.safetensors: not a readable safetensors"):
        W.load_into(FlowActModel(p), W.resolve(p, weights=junk))
    _, path = _saved(tmp_path)
    with pytest.raises(FlowactError, match="do not fit preset 'toon-128'"):
        with torch.device("meta"):
            big = FlowActModel(load_preset("toon-128"))
        W.load_into(big, W.resolve(load_preset("toon-128"), weights=path))


def test_hub_weights_from_cache_with_sha_check(tmp_path):
    _, path = _saved(tmp_path)
    payload = path.read_bytes()
    sha = W.sha256_of(path)
    cache = _fake_hub_cache(tmp_path, "flowact/tiny", "tiny.safetensors", payload)
    p = _preset_with(tmp_path, f"weights: {{hub: {{repo: flowact/tiny, file: tiny.safetensors, sha256: '{sha}'}}}}\n")
    src = W.resolve(p, cache_dir=cache)
    assert src.kind == "hub" and src.path.read_bytes() == payload
    W.load_into(FlowActModel(p), src)
    bad = _preset_with(
        tmp_path, f"weights: {{hub: {{repo: flowact/tiny, file: tiny.safetensors, sha256: '{ZEROS}'}}}}\n"
    )
    with pytest.raises(FlowactError, match="sha256 mismatch"):
        W.resolve(bad, cache_dir=cache)


def test_hub_offline_and_not_cached_fails_fast_with_advice(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    p = _preset_with(tmp_path, f"weights: {{hub: {{repo: flowact/absent, file: w.safetensors, sha256: '{ZEROS}'}}}}\n")
    t = time.perf_counter()
    with pytest.raises(FlowactError, match="not cached and the hub is unreachable.*flowact download --preset tiny"):
        W.resolve(p, cache_dir=str(tmp_path / "empty-cache"))
    assert time.perf_counter() - t < 3.0


def test_bundled_missing_and_random_fallback(tmp_path):
    p = _preset_with(tmp_path, "weights: {bundled: not-shipped.safetensors}\n")
    with pytest.raises(FlowactError, match="bundled weights that are missing"):
        W.resolve(p)
    src = W.resolve(load_preset(TINY), seed=5)
    assert src.kind == "random" and src.seed == 5 and "publishes no trained weights" in src.describe()
    assert W.resolve(load_preset(TINY), random_weights=True, seed=2).describe().startswith("RANDOM (seed 2")


def test_the_embedded_default_matches_its_preset():
    """The weights in the package are the ones the toon-128 preset names (sha256) and fit its
    architecture exactly: a preset change without re-shipped weights fails here, not in a
    user's first render."""
    p = load_preset("toon-128")
    src = W.resolve(p)
    assert src.kind == "bundled"
    W.load_into(FlowActModel(p), src)


def test_every_model_saves_one_self_describing_format(tmp_path):
    from flowact.model.motion import MotionConfig, MotionDiT
    from flowact.stream.motion import MotionEngine, save_motion

    p = load_preset(TINY)
    m = FlowActModel(p)
    m.init_random(1)
    h = W.read_header(W.save(m, tmp_path / "toon.safetensors"))
    assert (h.format, h.model, h.config["model"]["width"], h.extra["preset"]) == (
        W.FORMAT,
        "toon",
        p.model.width,
        p.name,
    )
    cfg = MotionConfig(width=32, depth=2)
    h = W.read_header(save_motion(MotionDiT(cfg), tmp_path / "motion.safetensors", steps=4))
    assert (h.model, h.config["width"], h.config["depth"], h.extra["steps"]) == ("motion", 32, 2, 4)
    engine = MotionEngine.load(tmp_path / "motion.safetensors")  # its architecture comes from the file
    assert (engine.model.cfg.width, engine.model.cfg.depth, len(engine.timesteps)) == (32, 2, 5)
    for model in ("toon", "motion", "judge"):  # the shipped ones too
        assert W.read_header(W.bundled_path(f"{'toon-128' if model == 'toon' else model}.safetensors")).model == model


def test_a_file_says_why_it_does_not_fit(tmp_path):
    from dataclasses import replace

    from flowact.stream.motion import MotionEngine

    p = load_preset(TINY)
    deep = replace(p, model=replace(p.model, depth=3))
    m = FlowActModel(deep)
    m.init_random(0)
    path = W.save(m, tmp_path / "wide.safetensors")
    with pytest.raises(FlowactError, match=r"it was saved for model\.depth 3 \(file\) vs 2 \(preset\)"):
        W.load_into(FlowActModel(p), W.WeightsSource("local", path))
    with pytest.raises(FlowactError, match="wide.safetensors: this file holds toon weights, not motion weights"):
        MotionEngine.load(path)
    with pytest.raises(FlowactError, match="holds motion weights, not toon weights"):
        W.load_into(FlowActModel(p), W.WeightsSource("local", W.bundled_path("motion.safetensors")))
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"), metadata={"format": "pt"})
    with pytest.raises(FlowactError, match="other.safetensors: not a flowact weights file"):
        W.read_header(tmp_path / "other.safetensors")
    save_file({"x": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))  # no header: the tensors must fit
    with pytest.raises(FlowactError, match="plain.safetensors: weights do not fit preset"):
        W.load_into(FlowActModel(p), W.WeightsSource("local", tmp_path / "plain.safetensors"))
    with pytest.raises(FlowactError, match="no motion architecture in the file's header"):
        MotionEngine.load(tmp_path / "plain.safetensors")


def test_files_of_the_older_formats_still_load(tmp_path):
    from safetensors.torch import load_file, save_file

    from flowact.stream.motion import MotionEngine

    p = load_preset(TINY)
    m = FlowActModel(p)
    m.init_random(2)
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(tmp_path / "old.safetensors"),
              metadata={"format": "flowact-weights-1", "preset": p.name})  # fmt: skip
    fresh = FlowActModel(p)
    W.load_into(fresh, W.WeightsSource("local", tmp_path / "old.safetensors"))
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), m.state_dict().values()))
    shipped = W.bundled_path("motion.safetensors")
    header = W.read_header(shipped)
    meta = {"format": "flowact-motion-1", "config": json.dumps(header.config), "steps": "3", "shift": "2.0"}
    save_file(load_file(str(shipped)), str(tmp_path / "old_motion.safetensors"), metadata=meta)
    old, new = MotionEngine.load(tmp_path / "old_motion.safetensors"), MotionEngine.load(shipped)
    assert old.timesteps == new.timesteps
    assert all(torch.equal(a, b) for a, b in zip(old.model.state_dict().values(), new.model.state_dict().values()))
