"""Live-mode benchmark: response latency per command kind, memory over a long session, late chunks.

A scripted session on a preset (random weights unless --weights): every `--every` seconds a
command, cycling speak (a 2 s speech clip) / state / prompt / listen, for `--minutes`. Reports
latency p50/p95 per kind (command received -> first frame reflecting it written into ffmpeg),
resident memory at minute 1 and at the end, late chunks and held frames, chunk cost.

    python benchmarks/bench_live.py --preset toon-128 --minutes 1
    python benchmarks/bench_live.py --preset toon-128 --minutes 10 --out /tmp/live10.mp4 --json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def make_script(seconds: float, every: float, clip: str) -> list:
    from flowact.live.protocol import ScriptLine

    cycle = [
        {"cmd": "speak", "audio": clip},
        {"cmd": "state", "state": "thinking"},
        {"cmd": "state", "state": "auto"},
        {"cmd": "prompt", "text": "waving hello"},
        {"cmd": "speak", "audio": clip},
        {"cmd": "listen", "active": True},
        {"cmd": "listen", "active": False},
        {"cmd": "state", "state": "nodding", "seconds": 1.0},
    ]
    lines, t, i = [], 1.0, 0
    while t < seconds - 1.0:
        lines.append(ScriptLine(t, json.dumps(cycle[i % len(cycle)]), i + 1))
        t, i = t + every, i + 1
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="toon-128")
    ap.add_argument("--minutes", type=float, default=1.0)
    ap.add_argument("--every", type=float, default=2.5, help="seconds between commands")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--ahead", type=float, default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=None, help="output mp4 (default: a temporary file)")
    ap.add_argument("--events", default=None, help="also write all events to this JSON-lines file")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    from flowact.live import EventLog, LiveOptions, run_live
    from flowact.media.audio import load_audio, write_wav
    from flowact.media.image import load_image
    from flowact.routes import load_route

    route = load_route(
        a.preset, device=a.device, weights=a.weights, random_weights=a.weights is None, threads=a.threads
    )
    p = route.preset
    tmp = Path(tempfile.mkdtemp(prefix="flowact-bench-live-"))
    clip = tmp / "clip.wav"
    speech = load_audio(ROOT / "examples" / "speech_en.wav").samples
    write_wav(clip, speech[int(0.3 * 16000) : int(2.3 * 16000)], 16000)
    reference = load_image(ROOT / "examples" / "character_1.png", p.video.width, p.video.height, "cover")
    seconds = a.minutes * 60
    events: list[dict] = []
    sink = open(a.events, "w") if a.events else None
    log = EventLog(sink, on_event=lambda ev: events.append(ev) if ev["event"] != "received" else None)
    out = a.out or str(tmp / "live.mp4")
    report = run_live(
        route,
        reference,
        LiveOptions(out=out, duration=seconds, ahead=a.ahead, memory_every=30.0),
        events=log,
        script=make_script(seconds, a.every, str(clip)),
    )
    if sink:
        sink.close()
    mem = report.memory_mb
    at_1 = min(mem, key=lambda m: abs(m[0] - 60.0)) if mem else None
    lates = [e for e in events if e["event"] == "late"]
    gen = [e["gen_ms"] for e in events if e["event"] == "chunk"]
    half = len(gen) // 2
    result = {
        "preset": p.name,
        "conditions": report.conditions,
        "weights": report.weights,
        "stream_seconds": report.video_seconds,
        "wall_seconds": report.wall_seconds,
        "frames": report.frames,
        "latency_ms": report.latency_ms,
        "late_chunks": report.late_chunks,
        "chunks": report.chunks,
        "held_frames": report.held_frames,
        "held_seconds": report.held_frames / p.video.fps,
        "late_first_half": sum(1 for e in lates if e["t"] < seconds / 2),
        "late_second_half": sum(1 for e in lates if e["t"] >= seconds / 2),
        "rss_mb_at_minute_1": at_1,
        "rss_mb_at_end": mem[-1] if mem else None,
        "rss_mb_series": mem,
        "chunk_gen_ms": report.chunk_gen_ms,
        "chunk_gen_ms_median_halves": [
            float(np.median(gen[:half])) if half else None,
            float(np.median(gen[half:])) if gen else None,
        ],
        "ahead_ms_final": report.ahead_ms,
        "output": out,
    }
    if a.json:
        print(json.dumps(result, indent=2))
        return
    print(f"live bench: {p.name}, {report.conditions}, {result['stream_seconds']:.1f} s of stream")
    for kind, lat in report.latency_ms.items():
        print(f"  latency {kind:10s} p50 {lat['p50']} ms  p95 {lat['p95']} ms  max {lat['max']} ms  (n={lat['n']})")
    print(
        f"  late chunks {report.late_chunks}/{report.chunks} ({report.held_frames} held frames; "
        f"1st half {result['late_first_half']}, 2nd half {result['late_second_half']})"
    )
    print(
        f"  chunk cost (generate + decode) {report.chunk_gen_ms} ms; medians by half "
        f"{result['chunk_gen_ms_median_halves']}"
    )
    print(f"  RSS at ~minute 1: {at_1}  at end: {result['rss_mb_at_end']}  (MB; peak {report.peak_memory_mb} MB)")


if __name__ == "__main__":
    sys.exit(main())
