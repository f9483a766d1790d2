"""Batch vs separate renders: N short jobs through one `flowact render --manifest` against
N separate `flowact render` processes, measured in one run on the same inputs.

    python benchmarks/bench_batch.py                        # 20 jobs of 1 s, toon-128
    python benchmarks/bench_batch.py --jobs 20 --seconds 1 --preset tests/data/tiny.yaml --overlap

Prints wall times, the ratio, and the conditions (CPU, threads, preset, torch). `--overlap`
also times the in-process batch with and without overlapping job i's encode tail with
job i+1's generation (library call, model already loaded).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CLI = [sys.executable, "-c", "from flowact.cli import main; main()"]


def make_jobs(folder: Path, n: int, seconds: float) -> list[dict]:
    from PIL import Image

    from flowact.media.audio import write_wav

    rng = np.random.default_rng(0)
    jobs = []
    for i in range(n):
        img, wav = folder / f"face{i}.png", folder / f"talk{i}.wav"
        Image.fromarray((rng.random((160, 128, 3)) * 255).astype(np.uint8)).save(img)
        t = np.arange(int(seconds * 16000)) / 16000
        write_wav(wav, 0.3 * np.sin(2 * np.pi * (150 + 10 * i) * t) * (np.sin(2 * np.pi * 3 * t) > 0), 16000)
        jobs.append({"image": str(img), "audio": str(wav), "seed": i})
    return jobs


def timed(cmd: list[str], **kw) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=1.0, help="audio seconds per job")
    ap.add_argument("--preset", default="toon-128")
    ap.add_argument("--overlap", action="store_true", help="also time in-process overlap on vs off")
    args = ap.parse_args()

    import torch

    from flowact.config import load_preset
    from flowact.routes.toon import default_threads

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        jobs = make_jobs(folder, args.jobs, args.seconds)
        common = ["--preset", args.preset, "--random-weights"]

        sep_dir = folder / "separate"
        sep_dir.mkdir()
        t_separate = 0.0
        for i, j in enumerate(jobs):
            t_separate += timed(
                CLI
                + [
                    "render",
                    "-i",
                    j["image"],
                    "-a",
                    j["audio"],
                    "-o",
                    str(sep_dir / f"{i}.mp4"),
                    "--seed",
                    str(j["seed"]),
                ]
                + common
            )

        manifest = folder / "jobs.jsonl"
        manifest.write_text("".join(json.dumps({**j, "out": f"{i}.mp4"}) + "\n" for i, j in enumerate(jobs)))
        t_batch = timed(CLI + ["render", "--manifest", str(manifest), "--out-dir", str(folder / "batch")] + common)
        assert len(list((folder / "batch").glob("*.mp4"))) == args.jobs

        video = args.jobs * args.seconds
        cond = (
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"threads {default_threads(load_preset(args.preset))} per process (flowact's default: half the "
            f"cores each for generation and decode), preset {args.preset}, random weights, "
            f"{args.jobs} jobs x {args.seconds:g} s audio"
        )
        print(f"conditions: {cond}")
        print(
            f"{args.jobs} separate `flowact render` processes: {t_separate:7.1f} s  "
            f"({t_separate / args.jobs:.2f} s/job, aggregate RTF {video / t_separate:.2f})"
        )
        print(
            f"one `flowact render --manifest` ({args.jobs} jobs): {t_batch:7.1f} s  "
            f"({t_batch / args.jobs:.2f} s/job, aggregate RTF {video / t_batch:.2f})"
        )
        print(f"ratio separate / batch: {t_separate / t_batch:.2f}x")

        if args.overlap:
            from flowact.batch import BatchOptions, Defaults, parse_manifest, run_batch

            times = {}
            for overlap in (False, True, False, True):  # interleaved: the machine is shared and noisy
                out = folder / f"overlap-{overlap}-{len(times)}"
                out.mkdir()
                batch = parse_manifest(manifest.read_text(), Defaults(preset=args.preset, out_dir=out))
                opts = BatchOptions(random_weights=True)
                run_batch(batch[:1], opts, overlap=overlap)  # warm-up (model load, first-call costs)
                t = time.perf_counter()
                outcome = run_batch(batch[1:], opts, overlap=overlap)
                times.setdefault(overlap, []).append(time.perf_counter() - t)
                assert outcome.exit_code == 0
            for overlap, ts in times.items():
                print(
                    f"in-process batch of {args.jobs - 1} jobs, overlap {'on ' if overlap else 'off'}: "
                    + ", ".join(f"{t:.2f} s" for t in ts)
                    + " (includes one model load per run)"
                )


if __name__ == "__main__":
    main()
