"""`flowact bench`: fps and time-to-first-frame of a preset, under stated conditions.

One warm-up render (excluded) then one measured render of `seconds` of speech-like audio
into a real H.264 file: TTFF is request -> first frame written into ffmpeg (warm model);
end-to-end fps and the real-time factor count generation, decode and encode; generator
fps counts the transformer alone.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

import numpy as np

from .media.audio import write_wav
from .render import render
from .routes import Route
from .weights import bundled_path

BENCH_PHOTO = "astronaut.jpg"  # scikit-image's public-domain NASA portrait (examples/astronaut.jpg)


def bench_inputs(folder: Path, width: int, height: int, seconds: float, seed: int = 0) -> tuple[Path, Path]:
    """A reference picture and a speech-like track (voiced bursts with pauses, varying pitch);
    content does not change speed, but real files exercise the real loaders."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (width, height), (70, 110, 160))
    d = ImageDraw.Draw(img)
    cx, cy, r = width // 2, height * 2 // 5, min(width, height) // 4
    d.rectangle([cx - 2 * r, cy + r, cx + 2 * r, height], fill=(180, 60, 60))
    d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(235, 190, 160))
    d.ellipse([cx - r // 2, cy - r // 4, cx - r // 4, cy], fill=(30, 30, 30))
    d.ellipse([cx + r // 4, cy - r // 4, cx + r // 2, cy], fill=(30, 30, 30))
    d.rectangle([cx - r // 3, cy + r // 3, cx + r // 3, cy + r // 2], fill=(120, 30, 40))
    image = folder / "bench_ref.png"
    img.save(image)
    rate = 16_000
    t = np.arange(int(seconds * rate)) / rate
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 6))
    syll = (np.sin(2 * np.pi * 4.0 * t) > -0.2).astype(np.float32)
    pauses = np.repeat(rng.random(int(seconds) + 1) > 0.2, rate)[: len(t)]
    audio = folder / "bench_speech.wav"
    write_wav(audio, 0.25 * voiced * syll * pauses + 0.003 * rng.standard_normal(len(t)), rate)
    return image, audio


def bench_photo(folder: Path, width: int, height: int) -> Path:
    """The bundled portrait covering the preset's full output size (the photo route never scales
    a photo up, so a smaller one would bench a smaller video)."""
    from PIL import Image

    from .media.image import load_image

    path = folder / "bench_photo.png"
    Image.fromarray(load_image(bundled_path(BENCH_PHOTO), width, height, "cover")).save(path)
    return path


def run_bench(route: Route, seconds: float = 10.0, seed: int = 0, warmup_seconds: float = 1.0, on_chunk=None) -> dict:
    p = route.preset
    with tempfile.TemporaryDirectory(prefix="flowact-bench-") as tmp:
        folder = Path(tmp)
        image, audio = bench_inputs(folder, p.video.width, p.video.height, max(seconds, warmup_seconds), seed)
        if route.needs_face:  # a face to move: a real portrait ships in the package
            image = bench_photo(folder, p.video.width, p.video.height)
        render(
            route,
            image,
            audio,
            folder / "warmup.mp4",
            seed=seed,
            max_seconds=warmup_seconds,
            prompt="speaking",
            sync_timing=True,
        )
        report = render(
            route,
            image,
            audio,
            folder / "bench.mp4",
            seed=seed,
            max_seconds=seconds,
            prompt="speaking",
            sync_timing=True,
            on_chunk=on_chunk,
        )
    out = report.to_dict()
    out["output"] = None
    lat = report.chunk_ms
    half = len(lat) // 2
    # flat per-chunk cost: the stream's second half should cost what its first half did
    out["chunk_latency_ms"]["first_half_median"] = round(statistics.median(lat[1:half] or lat), 2)
    out["chunk_latency_ms"]["second_half_median"] = round(statistics.median(lat[half:] or lat), 2)
    out["warmup"] = f"one {warmup_seconds:g} s render before measuring (excluded)"
    out["chunk_video_ms"] = 1000 * p.frames_per_chunk / p.video.fps
    return out
