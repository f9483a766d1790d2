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
    from flowact.render import Engine

    for overlap in (True, False):  # the refiner runs in the decode thread and in the main one alike
        e = Engine.load(preset, device="cpu", random_weights=True)
        r = e.render(img, wav, tmp_path / f"o{overlap}.mp4", overlap=overlap)
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
