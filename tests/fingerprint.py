"""Bit-level fingerprints of what flowact makes, for refactors that must not change it.

    python tests/fingerprint.py > before.json     # on main, before the change
    python tests/fingerprint.py > after.json      # after it, on the same machine
    diff before.json after.json                   # empty: bit-identical

Each entry is a sha256 over raw bytes: the tiny preset's latents and frames (seeded random
weights, fp32, 5 chunks, through the library), and the decoded frames of whole renders through
the command line (toon-128 and photo-512 with their shipped weights, fp32 and bf16). Hashes are
exact for one CPU kind and torch build only (vector widths change float sums), so they are a
before/after tool, not a committed test; `test_golden.py` holds the portable statistics.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EX = ROOT / "examples"


def sha(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def decoded_frames(path: Path) -> bytes:
    from flowact.media.ffmpeg import find_ffmpeg

    cmd = [find_ffmpeg(None), "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    return subprocess.run(cmd, check=True, capture_output=True).stdout


def cli_render(tmp: Path, name: str, *args: str) -> str:
    out = tmp / f"{name}.mp4"
    cmd = [sys.executable, "-m", "flowact.cli", "render", "-o", str(out), "--seed", "3", *args]
    subprocess.run(cmd, check=True, capture_output=True)
    return hashlib.sha256(decoded_frames(out)).hexdigest()[:16]


def tiny_stream() -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    from test_golden import tiny_stream as stream  # the golden test's stream: one definition

    latents, frames = stream()
    return {"tiny_latents": sha(*latents), "tiny_frames": sha(*frames)}


def live_chunks(preset: str, image: Path, audio: Path, dtype: str | None = None) -> str:
    """What `flowact live` makes per chunk: the route's live stream fed the speech chunk by chunk."""
    from flowact.config import load_preset
    from flowact.routes import load_inputs, load_route

    route = load_route(preset, dtype=dtype)
    inputs = load_inputs(load_preset(preset), image, audio)
    stream = route.stream(route.prepare(inputs.reference, inputs.face), 3)
    pcm = inputs.audio.samples.astype(np.float32)
    n, la = stream.chunk_samples, stream.lookahead_samples
    frames = []
    for k in range(5):
        chunk = pcm[k * n : (k + 1) * n]
        frames.append(stream.frames(k, "speaking", "speaking", chunk, pcm[(k + 1) * n : (k + 1) * n + la]))
    return sha(*frames)


def main() -> None:
    out = tiny_stream()
    out["live_toon128"] = live_chunks("toon-128", EX / "character_1.png", EX / "speech_en.wav", "float32")
    out["live_photo512"] = live_chunks("photo-512", EX / "astronaut.jpg", EX / "human_speech.wav")
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        toon = ["-i", str(EX / "character_1.png"), "-a", str(EX / "speech_en.wav"), "--seconds", "2"]
        out["toon128_fp32"] = cli_render(tmp, "toon32", *toon, "--preset", "toon-128", "--dtype", "float32")
        out["toon128_bf16"] = cli_render(tmp, "toon16", *toon, "--preset", "toon-128", "--dtype", "bfloat16")
        photo = ["-i", str(EX / "astronaut.jpg"), "-a", str(EX / "human_speech.wav"), "--seconds", "2"]
        out["photo512"] = cli_render(tmp, "photo", *photo, "--preset", "photo-512")
        out["photo512_prompt"] = cli_render(tmp, "photop", *photo, "--preset", "photo-512", "--prompt", "nodding")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
