"""`flowact synth`: write a dataset of synthetic clips, in parallel worker processes.

Layout of DIR: `clip_00000.mp4` (H.264 + AAC speech), `.wav` (16 kHz), `.ref.png` (neutral
reference), `.json` (labels), one set per clip, and `synth.json` (the manifest: arguments,
clip list, timings, sizes).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import FlowactError

MANIFEST = "synth.json"


@dataclass(frozen=True)
class SynthRequest:
    out: Path
    clips: int
    seconds: float
    width: int
    height: int
    seed: int
    workers: int = 1


def parse_size(text: str) -> tuple[int, int]:
    """'128x128' -> (128, 128); even sides from 32 to 4096."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise FlowactError(f"--size must look like WIDTHxHEIGHT (e.g. 128x128), got {text!r}") from None
    if not (32 <= w <= 4096 and 32 <= h <= 4096) or w % 2 or h % 2:
        raise FlowactError(f"--size {text}: sides must be even and between 32 and 4096")
    return w, h


def _one(args: tuple) -> dict:
    from .clip import clip_seed, make_clip, write_clip

    out, index, seconds, width, height, seed = args
    t0 = time.perf_counter()
    clip = make_clip(clip_seed(seed, index), seconds, width, height)
    made = time.perf_counter() - t0
    info = write_clip(clip, out, f"clip_{index:05d}")
    info["plan_seconds"] = made
    info["seconds"] = clip.seconds
    info["wall_seconds"] = time.perf_counter() - t0
    return info


def synth_dataset(req: SynthRequest, progress: Callable[[int], None] | None = None) -> dict:
    """Write `req.clips` clips into `req.out`; returns the manifest (also written as synth.json)."""
    from .speech import check_espeak

    if req.clips < 1:
        raise FlowactError("--clips must be at least 1")
    if not 0.2 <= req.seconds <= 600:
        raise FlowactError("--seconds must be between 0.2 and 600")
    if req.out.exists() and not req.out.is_dir():
        raise FlowactError("output path exists and is not a folder", path=req.out)
    try:
        req.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FlowactError(f"cannot create output folder ({exc.strerror})", path=req.out) from exc
    if not os.access(req.out, os.W_OK):
        raise FlowactError("output folder is not writable", path=req.out)
    check_espeak()
    jobs = [(req.out, i, req.seconds, req.width, req.height, req.seed) for i in range(req.clips)]
    workers = max(1, min(req.workers, req.clips))
    t0 = time.perf_counter()
    results = []
    if workers == 1:
        for job in jobs:
            results.append(_one(job))
            if progress:
                progress(1)
    else:
        import multiprocessing as mp

        # forkserver, not fork: workers forked from this process inherit its other threads'
        # locks (torch's, a writer's) and can hang for good on one (seen in the test suite);
        # the fork server is a fresh single-threaded process, and workers fork from it
        with mp.get_context("forkserver").Pool(workers) as pool:
            for info in pool.imap(_one, jobs):
                results.append(info)
                if progress:
                    progress(1)
    wall = time.perf_counter() - t0
    frames = sum(r["frames"] for r in results)
    render = sum(r["render_seconds"] for r in results)
    busy = sum(r["wall_seconds"] for r in results)
    total_bytes = sum(sum(r["bytes"].values()) for r in results)
    clip_seconds = sum(r["seconds"] for r in results)
    manifest = {
        "clips": [r["name"] for r in results],
        "seeds": [r["seed"] for r in results],
        "args": {
            "clips": req.clips,
            "seconds": req.seconds,
            "size": f"{req.width}x{req.height}",
            "seed": req.seed,
            "workers": workers,
        },
        "frames": frames,
        "wall_seconds": round(wall, 3),
        "render_fps_per_core": round(frames / max(render, 1e-9), 1),
        "end_to_end_fps_per_core": round(frames / max(busy, 1e-9), 1),
        "fps_overall": round(frames / max(wall, 1e-9), 1),
        "bytes": total_bytes,
        "bytes_per_clip_second": round(total_bytes / max(clip_seconds, 1e-9)),
        "mp4_bytes_per_clip_second": round(
            sum(r["bytes"][f"{r['name']}.mp4"] for r in results) / max(clip_seconds, 1e-9)
        ),
    }
    (req.out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest
