"""A latent cache whose motion is the motion engine's instead of the world's labels.

    python scripts/engine_motion_cache.py runs/mcache runs/mcache_engine [--engine PATH] [--seed 0]

Every clip's motion is what a render would give the video model: the motion engine (the bundled
one, or --engine) hears the clip's audio chunk by chunk with its past and look-ahead
(stream/motion.py MotionSource), told the prompt of each chunk's first frame, and its numbers go
through world/motion_vector.py video_input. The latents, audio, prompts and labels other than
the motion are the source cache's (linked, not copied, where they are whole files). For the
transformer stages whose targets are the model's own (`flowact train --stage distill`: the student
matches the teacher given the same motion), so the video model trains on the motion it is told at
inference; a stage whose target is the world's latents must keep the world's motion.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", type=Path)
    ap.add_argument("dest", type=Path)
    ap.add_argument("--engine", default=None, help="motion engine weights (default: the bundled ones)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    from flowact.stream.motion import MotionEngine, MotionSource
    from flowact.world.motion_vector import video_input

    shards = sorted(a.source.glob("shard_*.npz"))
    if not shards:
        raise SystemExit(f"{a.source}: no shard_*.npz")
    a.dest.mkdir(parents=True, exist_ok=True)
    for name in ["cache.json", "init.safetensors"] + [s.name.replace(".npz", ".prompts.json") for s in shards]:
        link = a.dest / name
        if not link.exists():
            os.symlink((a.source / name).resolve(), link)
    engine = MotionEngine.load(a.engine)
    t0, done, diffs = time.perf_counter(), 0, []
    for shard in shards:
        prompts = json.loads(shard.with_name(shard.name.replace(".npz", ".prompts.json")).read_text())
        with np.load(shard) as d:
            arrays = {k: d[k] for k in d}
        truth = arrays["motion"].astype(np.float32)
        frames, dim = truth.shape[1], truth.shape[2]
        made = np.zeros_like(truth)
        for c in range(len(truth)):
            src = MotionSource(engine, a.seed * 100003 + done, arrays["audio"][c].astype(np.float32))
            per = src.chunk_frames
            rows = []
            for k in range(-(-frames // per)):
                rows.append(video_input(src.chunk(k, prompts[c][min(k * per, frames - 1)])))
            made[c] = np.concatenate(rows)[:frames, :dim]
            diffs.append(float(np.abs(made[c] - truth[c]).mean()))
            done += 1
        arrays["motion"] = made.astype(np.float16)
        np.savez(a.dest / shard.name, **arrays)
        print(f"{shard.name}: {len(truth)} clips, {done} in all, {time.perf_counter() - t0:.0f} s", flush=True)
    print(f"mean |engine - labels| per number: {np.mean(diffs):.4f}")


if __name__ == "__main__":
    main()
