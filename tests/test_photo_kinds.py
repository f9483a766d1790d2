"""The photos people have, through `flowact render` with the real ffmpeg: real portraits that ship inside
PyPI packages (the test extras install them) and variants made from them.

| kind | picture | licence |
|---|---|---|
| smile with teeth | scikit-image `data/astronaut.png` (Eileen Collins, NASA) | public domain |
| glasses, closed mouth, wrinkles | matplotlib `mpl-data/sample_data/grace_hopper.jpg` (US Navy) | public domain |
| stubble, head turned ~35 degrees, lips apart | mahotas `demos/data/luispedro.jpg` (its author) | MIT (mahotas) |
| a man nearly in profile, small face, grayscale | scikit-image `data/camera.png` | CC0 |

Made from them here: grayscale, darker skin, a low-key exposure, a head tilted 30 degrees, a 112 px crop,
a 4000x3000 photo, a small face in a wide shot, two people side by side. Each render is 1.6 s: 0.6 s of
silence, then 1 s of a human voice (examples/human_speech.wav). What each must show: the route takes it as
a photograph, the mouth moves with the speech and not before, the background above the shoulders keeps its
pixels, and the output has the photo's framing (a tiny one at least 256 px, a large one fitted into 512)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from flowact.media.audio import load_audio, write_wav
from flowact.media.image import fit_within, read_image
from flowact.media.probe import probe, read_frames
from flowact.photo import face as F
from helpers import portrait as _portrait
from helpers import run_cli

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
INSTALL = "pip install -e '.[dev]' (scikit-image, matplotlib and mahotas ship the portraits)"
SILENT_FRAMES = 15  # 0.6 s at 25 fps


@pytest.fixture(scope="module")
def portraits() -> dict[str, Image.Image]:
    return {
        "astronaut": _portrait("skimage", "data", "astronaut.png").convert("RGB"),
        "camera": _portrait("skimage", "data", "camera.png"),
        "grace": _portrait("matplotlib", "mpl-data", "sample_data", "grace_hopper.jpg").convert("RGB"),
        "luis": _portrait("mahotas", "demos", "data", "luispedro.jpg").convert("RGB"),
    }


def _darker(im: Image.Image, gamma: float, tint) -> Image.Image:
    a = np.asarray(im, np.float32) / 255
    return Image.fromarray((255 * a**gamma * np.asarray(tint)).clip(0, 255).astype(np.uint8))


def _group(p) -> Image.Image:
    g = Image.new("RGB", (900, 420), (120, 120, 120))
    g.paste(p["luis"].resize((334, 420)), (0, 0))
    g.paste(p["grace"].resize((358, 420)), (500, 0))
    return g


def _wide_shot(p) -> Image.Image:
    """The astronaut at 0.6 of her size in a 1024x768 scene (a blurred noise texture): ~12 px between the eyes
    once fitted into 512x384."""
    from PIL import ImageFilter

    noise = np.random.default_rng(0).normal(120, 25, (768, 1024, 3)).clip(0, 255).astype(np.uint8)
    scene = Image.fromarray(noise).filter(ImageFilter.GaussianBlur(2))
    scene.paste(p["astronaut"].resize((307, 307), Image.Resampling.LANCZOS), (600, 150))
    return scene


def _large(p) -> Image.Image:
    big = Image.new("RGB", (4000, 3000), (60, 70, 80))
    big.paste(p["grace"].resize((2560, 3000), Image.Resampling.BICUBIC), (720, 0))
    return big


# kind -> (how it is made, file name, expected output size or None: the photo's own size within 512)
KINDS = {
    "smile with teeth": (lambda p: p["astronaut"], "astronaut.png", (512, 512)),
    "glasses, closed mouth": (lambda p: p["grace"], "grace.jpg", (436, 512)),
    "stubble, turned ~35 degrees": (lambda p: p["luis"], "luis.jpg", (300, 376)),
    "grayscale": (lambda p: p["astronaut"].convert("L"), "gray.png", (512, 512)),
    "darker skin": (lambda p: _darker(p["luis"], 1.8, (0.6, 0.45, 0.38)), "dark.png", (300, 376)),
    "low key": (lambda p: _darker(p["grace"], 2.2, (0.55, 0.42, 0.35)), "lowkey.png", (436, 512)),
    "tilted 30 degrees": (
        lambda p: p["astronaut"].rotate(30, Image.Resampling.BICUBIC, center=(220, 150), fillcolor=(90, 90, 90)),
        "tilted.png",
        (512, 512),
    ),
    "112 px crop": (
        lambda p: p["astronaut"].crop((150, 40, 310, 200)).resize((112, 112), Image.Resampling.LANCZOS),
        "tiny.png",
        (256, 256),
    ),
    "4000x3000": (_large, "large.jpg", (512, 384)),
    "small face in a wide shot": (_wide_shot, "wide.jpg", (512, 384)),
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory, portraits) -> Path:
    d = tmp_path_factory.mktemp("kinds")
    for make, name, _ in KINDS.values():
        make(portraits).save(d / name, quality=92)
    _group(portraits).save(d / "group.png")
    x = load_audio(EXAMPLES / "human_speech.wav").samples  # silent until 0.44 s
    silence = np.zeros(SILENT_FRAMES * 640, np.float32)
    write_wav(d / "talk.wav", np.concatenate([silence, x[int(0.44 * 16000) : int(1.44 * 16000)]]), 16000)
    return d


def _render(folder: Path, image: str, *extra: str) -> tuple[dict, np.ndarray, str]:
    out = folder / f"{Path(image).stem}{''.join(extra)}.mp4"
    code, stdout, err = run_cli(["render", "-i", str(folder / image), "-a", str(folder / "talk.wav"), "-o", str(out),
                                 "--json", "--threads", "1", *extra])  # fmt: skip
    assert code == 0, err
    assert "route: photo-512 (auto: a photograph" in err, err
    report = json.loads(stdout)
    info = probe(out)
    assert info.frames == report["frames"] == 40 and info.video_codec == "h264" and info.audio_codec, info
    return report, read_frames(out).astype(np.float32), err


def _regions(reference: np.ndarray, mesh: F.FaceMesh) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the mouth (a box around the outer lip contour) and of the background above the chin
    and further than one face size from the face's centre."""
    p = mesh.points[:, :2]
    h, w = reference.shape[:2]
    yy, xx = np.mgrid[:h, :w]
    lips = p[list(F.LIPS_OUTER)]
    lc, lw = lips.mean(0), np.ptp(lips[:, 0])
    mouth = (np.abs(xx - lc[0]) < 0.6 * lw) & (np.abs(yy - lc[1]) < 0.4 * lw)
    size = max(np.ptp(p[:, 0]), np.ptp(p[:, 1]))
    c = p.mean(0)
    far = (np.hypot(xx - c[0], yy - c[1]) > size) & (yy < p[F.CHIN, 1])
    return mouth, far


def _moves_with_speech(frames: np.ndarray, mouth: np.ndarray, far: np.ndarray) -> tuple[float, float, float]:
    """Mean change at the mouth of the speaking frames from the silent ones, the same in the background, and
    the mouth's change among the silent frames. Silent: the first chunk (frames 2-7); from the next chunk on
    the head's idle motion shifts the whole face in silence too (the mouth stays closed: looked at)."""
    rest = frames[2:8]
    change = np.abs(frames[SILENT_FRAMES + 3 :] - rest.mean(0)).mean(-1)
    silent = np.abs(rest - rest.mean(0)).mean(-1)
    background = float(change[:, far].mean()) if far.any() else 0.0
    return float(change[:, mouth].mean()), background, float(silent[:, mouth].mean())


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_kind_of_photo_talks_and_keeps_the_rest(kind, folder):
    _, name, size = KINDS[kind]
    t = time.perf_counter()
    report, frames, _ = _render(folder, name)
    took = time.perf_counter() - t
    assert (frames.shape[2], frames.shape[1]) == size
    assert "the most confident face of the photo" in report["conditions"]
    reference = fit_within(folder / name, 512, 512, min_side=256)
    assert reference.shape[:2] == frames.shape[1:3]
    mouth, far = _regions(reference, F.analyse(reference, name))
    talking, background, silent = _moves_with_speech(frames, mouth, far)
    assert talking > 6 and talking > 3 * background and talking > 2.5 * silent, (kind, talking, background, silent)
    if far.mean() > 0.03:  # a close crop (luis, the 112 px one) has no background above the shoulders
        moved = np.abs(frames - reference.astype(np.float32)).mean(-1)[:, far]
        assert moved.mean() < 5 and moved.mean(1).max() < 8, (kind, moved.mean(), moved.mean(1).max())
    if kind == "grayscale":  # the mouth painted into a grayscale photo stays gray
        assert float((frames.max(-1) - frames.min(-1)).max()) < 16
    if kind == "4000x3000":
        assert took < 60, took


@pytest.fixture(scope="module")
def group(folder) -> dict:
    """The two-person photo rendered with --face 1 and --face 2: each face's mouth change, per render."""
    reference = fit_within(folder / "group.png", 512, 512, min_side=256)
    meshes = [F.analyse(reference, "group.png", face=n) for n in (1, 2)]
    out = {"reference": reference, "meshes": meshes}
    for n in (1, 2):
        report, frames, _ = _render(folder, "group.png", "--face", str(n))
        talks = [_moves_with_speech(frames, _regions(reference, m)[0], np.zeros(1, bool))[0] for m in meshes]
        out[n] = (report["conditions"], talks)
    return out


def test_a_group_photo_moves_the_face_it_is_told_to(folder, group):
    """Two people side by side: `--face N` counts faces left to right, the conditions line says which, and
    that face's mouth moves most (twice the other's change or more)."""
    reference, meshes = group["reference"], group["meshes"]
    assert meshes[0].points[:, 0].mean() < reference.shape[1] / 2 < meshes[1].points[:, 0].mean()
    for n in (1, 2):
        conditions, talks = group[n]
        assert f"face {n} of 2, left to right of the photo" in conditions, conditions
        told, other = talks[n - 1], talks[2 - n]
        assert told > 6 and other < told / 1.8, (n, talks)
    code, _, err = run_cli(["render", "-i", str(folder / "group.png"), "-a", str(folder / "talk.wav"), "-o",
                            str(folder / "x.mp4"), "--face", "3"])  # fmt: skip
    assert code == 2 and "--face 3: 2 face(s) found, numbered 1 to 2 left to right" in err, err


def test_live_and_batch_take_the_face_too(folder, group):
    """`flowact live --face N` and a manifest line's "face": N pick the same face as render's --face."""
    reference, meshes = group["reference"], group["meshes"]
    script = folder / "say.jsonl"
    script.write_text(json.dumps({"at": 0.0, "cmd": "speak", "audio": str(folder / "talk.wav")}) + "\n")
    code, stdout, err = run_cli(["live", "-i", str(folder / "group.png"), "--face", "2", "--script", str(script),
                                 "--out", str(folder / "live.mp4"), "--duration", "2", "--json"])  # fmt: skip
    assert code == 0, err
    assert "face 2 of 2, left to right of the photo" in json.loads(stdout)["conditions"]
    manifest = folder / "jobs.jsonl"
    lines = [{"image": str(folder / "group.png"), "audio": str(folder / "talk.wav"), "out": f"b{n}.mp4", "face": n}
             for n in (1, 2, 0)]  # fmt: skip
    manifest.write_text("".join(json.dumps(x) + "\n" for x in lines))
    code, stdout, err = run_cli(["render", "--manifest", str(manifest), "--out-dir", str(folder), "--json",
                                 "--threads", "1"])  # fmt: skip
    results = sorted((json.loads(x) for x in stdout.splitlines()), key=lambda r: r["line"])
    assert [r["status"] for r in results] == ["ok", "ok", "failed"], results
    assert "manifest line 3: face 0 is not a face number" in results[2]["error"]
    for n in (1, 2):
        frames = read_frames(folder / f"b{n}.mp4").astype(np.float32)
        talks = [_moves_with_speech(frames, _regions(reference, m)[0], np.zeros(1, bool))[0] for m in meshes]
        assert talks[n - 1] > 6 and talks[2 - n] < talks[n - 1] / 1.8, (n, talks)


def test_the_others_in_a_group_photo_keep_still(group):
    for n in (1, 2):
        talks = group[n][1]
        assert talks[2 - n] < 4, (n, talks)


def test_a_face_in_profile_is_a_clear_error(folder, portraits):
    """scikit-image's camera.png: a man seen nearly in profile behind a camera. The frontal mesh forced onto
    it dragged his camera along with his head: refused in one line."""
    path = folder / "camera.png"
    portraits["camera"].save(path)
    code, _, err = run_cli(["render", "-i", str(path), "-a", str(folder / "talk.wav"), "-o", str(folder / "c.mp4")])
    assert code == 2, err
    assert f"{path}: the face is seen nearly in profile" in err and "~45 degrees" in err, err
    assert not (folder / "c.mp4").exists()
    # a head turned ~35 degrees (luispedro.jpg) is not refused
    assert F.turn(F.analyse(fit_within(folder / "luis.jpg", 512, 512), "luis").points) < F.PROFILE


def test_a_large_photo_renders_in_bounded_memory(folder):
    """The console script on a 4000x3000 JPEG: fitted into 512x384, peak memory of the render process
    measured by a parent that runs nothing else."""
    out = folder / "large-cli.mp4"
    script = (
        "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
        "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); print(r.stderr, file=sys.stderr)"
    )
    flowact = Path(sys.executable).with_name("flowact")
    cmd = [str(flowact), "render", "-i", str(folder / "large.jpg"), "-a", str(folder / "talk.wav"), "-o", str(out),
           "--threads", "1"]  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", script, *cmd], capture_output=True, text=True, timeout=300)
    code, peak_kb = map(int, proc.stdout.split())
    assert code == 0, proc.stderr
    assert peak_kb < 1_500_000, f"peak {peak_kb / 1e3:.0f} MB"
    info = probe(out)
    assert (info.width, info.height, info.frames) == (512, 384, 40)


# ---------------------------------------------------------------- the files people's photos come in


def _png16(path: Path, rgb16: np.ndarray) -> None:
    """A 48-bit RGB PNG (PIL writes none)."""
    import struct
    import zlib

    h, w, _ = rgb16.shape
    raw = b"".join(b"\x00" + rgb16[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    head = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    body = chunk(b"IHDR", head) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)


def test_every_file_kind_reads_as_the_picture_a_person_sees(tmp_path, portraits):
    rgb = np.asarray(portraits["astronaut"])
    gray = np.asarray(portraits["astronaut"].convert("L"), np.float32)
    im = Image.fromarray(rgb)
    ex = Image.Exif()
    ex[274] = 6  # a phone's portrait shot: stored lying on its side, shown turned 90 degrees clockwise
    im.rotate(90, expand=True).save(tmp_path / "exif.jpg", exif=ex.tobytes(), quality=95)
    im.convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    im.save(tmp_path / "q95.jpg", quality=95)
    im.convert("LA").save(tmp_path / "la.png")
    im.convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "p.png")
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "gray16.png")
    Image.fromarray(gray / 255).save(tmp_path / "float.tif")
    _png16(tmp_path / "rgb16.png", rgb.astype(np.uint16) * 257)
    b = io.BytesIO()
    im.save(b, "WEBP", quality=95)
    (tmp_path / "photo.webp").write_bytes(b.getvalue())
    jpeg = read_image(tmp_path / "q95.jpg").astype(np.float32)
    colour = {"exif.jpg": jpeg, "cmyk.jpg": jpeg, "rgb16.png": rgb, "p.png": rgb, "photo.webp": rgb}
    for name, want in colour.items():
        got = read_image(tmp_path / name).astype(np.float32)
        assert got.shape == (512, 512, 3) and np.abs(got - want).mean() < 8, (name, np.abs(got - want).mean())
    for name in ("la.png", "gray16.png", "float.tif"):
        got = read_image(tmp_path / name).astype(np.float32)
        assert got.shape == (512, 512, 3) and np.abs(got.mean(-1) - gray).mean() < 1.5, (name, got.mean())
