"""Rendering speed of the synthetic world (frames/s on one core), by resolution.

    python benchmarks/bench_world.py [--frames 120]

Speed is a benchmark, not a unit test: the machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from flowact.world.behaviour import Segment, perform
from flowact.world.character import sample_character
from flowact.world.clip import REST_MOUTH
from flowact.world.draw import Renderer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    out = {}
    for w, h in ((128, 128), (256, 256), (832, 480)):
        c = sample_character(11)
        r = Renderer(c, w, h)
        m = perform(c, [Segment(0, 60, "waving", "wave", 1)], args.frames, np.random.default_rng(1))
        r.frame(m, REST_MOUTH, 0)  # warm-up
        runs = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            for i in range(args.frames):
                r.frame(m, REST_MOUTH, i)
            runs.append(args.frames / (time.perf_counter() - t0))
        out[f"{w}x{h}"] = round(statistics.median(runs), 1)
    print(json.dumps({"frames_per_second_one_core_median": out, "frames": args.frames, "repeats": args.repeats}))


if __name__ == "__main__":
    main()
