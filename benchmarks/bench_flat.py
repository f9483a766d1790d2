"""Flat cost over a long stream: does a chunk at minute one cost what a chunk at second one did?

    python benchmarks/bench_flat.py --preset r1-480p --random-weights --device cuda --seconds 60 --json flat.json
    python benchmarks/bench_flat.py --preset tests/data/tiny.yaml --random-weights --device cpu --seconds 3 --window 1

One warm-up render of 1 s (excluded), then one render of SECONDS of speech-like audio into a
real H.264 file, as `flowact bench` does (same inputs, `bench.bench_inputs`). Chunk latency is
the transformer's time per chunk (`RenderReport.chunk_ms`, synchronised on CUDA). Reported: p50,
p95, p99 and max over the stream, the same over the chunks that start in the first and in the
last WINDOW seconds of video, their ratios (last / first: 1.0 is flat), and the memory in use
when the first window ends and when the stream ends (CUDA: allocated by torch; CPU: resident):
the memory bank has a fixed capacity, so neither time nor memory may grow with the stream.
`--budget` ends the measured render after that many wall seconds (the file is finalised; the
figures cover what was rendered, `stopped_by_budget` says so).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from flowact.render import quantile, render


def summary(values: list[float]) -> dict:
    return {
        "chunks": len(values),
        "p50": quantile(values, 0.5),
        "p95": quantile(values, 0.95),
        "p99": quantile(values, 0.99),
        "max": quantile(values, 1.0),
        "mean": round(statistics.fmean(values), 2) if values else None,
    }


def memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device) / 2**20
    with open("/proc/self/statm") as f:  # Linux: resident pages
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def flat_report(chunk_ms: list[float], chunk_s: float, window_s: float) -> dict:
    """Latency over the whole stream and over its first and last `window_s` seconds of video
    (chunk k covers video [k * chunk_s, (k + 1) * chunk_s))."""
    video_s = len(chunk_ms) * chunk_s
    first = [ms for k, ms in enumerate(chunk_ms) if k * chunk_s < window_s]
    last = [ms for k, ms in enumerate(chunk_ms) if k * chunk_s >= video_s - window_s]
    a, b = summary(first), summary(last)

    def ratio(key):
        return round(b[key] / a[key], 3) if a[key] and b[key] else None

    return {
        "chunk_latency_ms": summary(chunk_ms),
        "first_window": a,
        "last_window": b,
        "last_over_first_p50": ratio("p50"),
        "last_over_first_p99": ratio("p99"),
    }


def run_flat(route, seconds: float, window_s: float, budget_s: float | None = None, seed: int = 0) -> dict:
    from flowact.bench import bench_inputs

    p = route.preset
    chunk_s = p.frames_per_chunk / p.video.fps
    marks: list[tuple[float, float]] = []  # (video seconds done, memory MB) after each chunk is written

    def on_chunk(ev) -> None:
        marks.append((ev.frames_done / p.video.fps, memory_mb(route.device)))

    stop = threading.Event()
    with tempfile.TemporaryDirectory(prefix="flowact-flat-") as tmp:
        folder = Path(tmp)
        image, audio = bench_inputs(folder, p.video.width, p.video.height, max(seconds, 1.0), seed)
        render(
            route, image, audio, folder / "warmup.mp4", seed=seed, max_seconds=1.0, prompt="speaking", sync_timing=True
        )
        if route.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(route.device)
        timer = threading.Timer(budget_s, stop.set) if budget_s else None
        if timer:
            timer.start()
        try:
            report = render(
                route,
                image,
                audio,
                folder / "flat.mp4",
                seed=seed,
                max_seconds=seconds,
                prompt="speaking",
                sync_timing=True,
                on_chunk=on_chunk,
                stop=stop,
            )
        finally:
            if timer:
                timer.cancel()
    first_end = next((mb for s, mb in marks if s >= min(window_s, report.video_seconds) - 1e-9), None)
    out = {
        "preset": p.name,
        "device": report.device,
        "dtype": report.dtype,
        "conditions": report.conditions,
        "seconds_requested": seconds,
        "video_seconds": report.video_seconds,
        "window_s": window_s,
        "chunk_video_ms": round(1000 * chunk_s, 2),
        "budget_s": budget_s,
        "stopped_by_budget": stop.is_set(),
        **flat_report(report.chunk_ms, chunk_s, window_s),
        "realtime_factor": report.realtime_factor,
        "e2e_fps": report.e2e_fps,
        "generator_fps": report.generator_fps,
        "ttff_seconds": report.ttff_seconds,
        "wall_seconds": report.wall_seconds,
        "stages": report.stages,
        "memory_mb": {
            "first_window_end": round(first_end, 1) if first_end is not None else None,
            "end": round(marks[-1][1], 1) if marks else None,
            "peak": round(report.peak_memory_mb, 1),
        },
        "chunk_ms": [round(ms, 2) for ms in report.chunk_ms],
        "warmup": "one 1 s render before measuring (excluded)",
    }
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="r1-480p", help="preset name or YAML file (default r1-480p)")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--dtype", default=None, help="float32 | bfloat16 | float16 (default: the preset's)")
    ap.add_argument("--weights", default=None, help="weights file (speed does not depend on values)")
    ap.add_argument("--random-weights", action="store_true", help="seeded random weights")
    ap.add_argument("--seconds", type=float, default=60.0, help="seconds of video in the measured render")
    ap.add_argument("--window", type=float, default=10.0, help="seconds of video in the first and last window")
    ap.add_argument("--budget", type=float, default=None, help="end the measured render after this many wall seconds")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="write the report to this JSON file")
    args = ap.parse_args(argv)

    from flowact.routes import load_route

    t = time.perf_counter()
    route = load_route(
        args.preset,
        device=args.device,
        dtype=args.dtype,
        weights=args.weights,
        random_weights=args.random_weights,
        seed=args.seed,
        threads=args.threads,
    )
    load_s = time.perf_counter() - t
    out = run_flat(route, args.seconds, args.window, args.budget, args.seed)
    out["load_seconds"] = round(load_s, 2)
    lat, a, b = out["chunk_latency_ms"], out["first_window"], out["last_window"]
    print(
        f"{out['conditions']}\n{out['video_seconds']:.1f} s of video in {out['wall_seconds']:.1f} s "
        f"(RTF {out['realtime_factor']:.2f}{', stopped by --budget' if out['stopped_by_budget'] else ''}); "
        f"chunk ms p50 {lat['p50']} p99 {lat['p99']} max {lat['max']}; first {args.window:g} s p50 {a['p50']} "
        f"p99 {a['p99']}, last {args.window:g} s p50 {b['p50']} p99 {b['p99']} (x{out['last_over_first_p50']}); "
        f"memory MB {out['memory_mb']}",
        file=sys.stderr,
    )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    else:
        print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
