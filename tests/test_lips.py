"""The lip refiner in every path that streams: render (overlapped decode and not), --no-lips,
and a live session. Tiny preset plus a `lips:` section, seeded random weights."""

import json

import yaml

from helpers import TINY, make_inputs, run_cli


def _tiny_lips(tmp_path):
    doc = yaml.safe_load(open(TINY))
    doc["lips"] = {"width": 8, "ear_width": 16}
    out = tmp_path / "tiny-lips.yaml"
    out.write_text(yaml.safe_dump(doc))
    return str(out)


def test_render_with_and_without_the_lip_refiner(tmp_path):
    from flowact.media.probe import probe

    preset = _tiny_lips(tmp_path)
    img, wav = make_inputs(tmp_path, seconds=1.0)
    for name, extra in (("on", []), ("off", ["--no-lips"])):
        out = tmp_path / f"{name}.mp4"
        code, _, err = run_cli(
            [
                "render",
                "-i",
                str(img),
                "-a",
                str(wav),
                "-o",
                str(out),
                "--preset",
                preset,
                "--random-weights",
                "--json",
                *extra,
            ]
        )
        assert code == 0, err
        info = probe(out)
        assert info.frames == 25 and info.width == 64
    from flowact.render import render
    from flowact.routes import load_route

    for overlap in (True, False):  # the refiner runs in the decode thread and in the main one alike
        e = load_route(preset, device="cpu", random_weights=True)
        r = render(e, img, wav, tmp_path / f"o{overlap}.mp4", overlap=overlap)
        assert r.frames == 25 and "lip refiner on" in r.conditions


def test_live_session_with_the_lip_refiner(tmp_path):
    from flowact.media.probe import probe

    preset = _tiny_lips(tmp_path)
    img, wav = make_inputs(tmp_path, seconds=0.6)
    script = tmp_path / "s.jsonl"
    script.write_text(
        "\n".join(json.dumps(x) for x in [{"at": 0.2, "cmd": "speak", "audio": str(wav)}, {"at": 1.2, "cmd": "stop"}])
        + "\n"
    )
    out = tmp_path / "live.mp4"
    code, stdout, stderr = run_cli(
        [
            "live",
            "-i",
            str(img),
            "--preset",
            preset,
            "--random-weights",
            "--script",
            str(script),
            "--out",
            str(out),
            "--json",
        ]
    )
    assert code == 0, stderr
    assert probe(out).frames == json.loads(stdout)["frames"] > 0


def _tiny_refiner():
    import dataclasses

    from flowact.config import LipsConfig, load_preset
    from flowact.model import FlowActModel

    p = dataclasses.replace(load_preset(TINY), lips=LipsConfig(width=8, ear_width=16))
    m = FlowActModel(p)
    m.init_random(0)
    return p, m.eval()


def test_the_mouth_map_is_off_for_weights_that_predate_it_and_gates_the_residual_when_on(tmp_path):
    """Weights saved before the refiner's mouth map load with it off and draw exactly as before;
    on, the map scales the residual: closed everywhere, the frame passes untouched."""
    import torch
    from safetensors.torch import save_file

    from flowact import weights as W
    from flowact.model import FlowActModel

    p, m = _tiny_refiner()
    old = {k: v for k, v in m.state_dict().items() if not k.startswith("lips.gate")}
    save_file({k: v.contiguous() for k, v in old.items()}, str(tmp_path / "old.safetensors"))
    m2 = FlowActModel(p)
    W.load_into(m2, W.resolve(p, weights=tmp_path / "old.safetensors"))
    m2.eval()
    lips = m2.lips
    assert float(lips.gate_on) == 0
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 3, 8, 64, 64, generator=g) * 2 - 1
    v = torch.rand(8, 5, generator=g)
    with torch.no_grad():
        before = lips(x, None, visemes=v)
        assert before.shape == x.shape and (before - x).abs().max() > 1e-3  # the refiner draws something
        for q in lips.gate.parameters():
            q.add_(torch.randn(q.shape, generator=g))
        assert torch.equal(lips(x, None, visemes=v), before)  # off: the map is not read at all
        lips.gate_on.fill_(1.0)
        lips.gate[2].weight.zero_()
        lips.gate[2].bias.fill_(-40.0)
        assert (lips(x, None, visemes=v) - x).abs().max() < 1e-6  # the map closed: nothing drawn
        lips.gate[2].bias.fill_(40.0)
        assert (lips(x, None, visemes=v) - before).abs().max() < 1e-6  # open everywhere: as before
        y, logits = lips(x, None, visemes=v, gate_logits=True)
        assert logits.shape == (8, 1, 8, 8) and torch.equal(y, lips(x, None, visemes=v))


def test_the_world_says_where_the_mouth_is_open_or_closed():
    import numpy as np

    from flowact.train.data import SynthSource

    src = SynthSource(7, 64, 64, seconds=3.0, mouth=True)
    rest = speaking = None
    for i in range(40):
        s = src.sample(0, i, 8)
        if s.mouth.sum() == 0 and rest is None:
            rest = s
        if s.mouth.sum() > 20 and speaking is None:
            speaking = s
        if rest is not None and speaking is not None:
            break
    assert rest is not None and speaking is not None
    for s in (rest, speaking):
        assert s.place.shape == (64, 64) and s.place.sum() > 4  # a closed mouth has a place too
        assert s.place.mean() < 0.05  # the mouth, not the face
        assert np.all(s.place >= s.mouth.max(axis=0))  # every pixel where it opens in the window
