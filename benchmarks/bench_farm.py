"""The batch on Ray against the local process pool: one manifest of N jobs (the README's picture,
examples/character_1.png, speaking the first S seconds of examples/speech_en.wav, seed i), run as

    flowact render --manifest jobs.jsonl --seconds S --json --out-dir local --jobs 2
    flowact render --manifest jobs.jsonl --seconds S --json --out-dir ray --ray local
    flowact render --manifest jobs.jsonl --seconds S --json --out-dir killed --ray local   # one worker SIGKILLed

The third run kills worker 1's process (its pid from the "ray: worker 1 up" line) once a
quarter of the jobs are reported. Prints each run's wall time and exit code, and whether every
video is byte-identical to the local pool's.

    python benchmarks/bench_farm.py                                  # 20 jobs of 1 s, toon-128
    python benchmarks/bench_farm.py --jobs 4 --preset tests/data/tiny.yaml
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-c", "from flowact.cli import main; main()"]


def run(args: list[str], kill_after: int | None = None) -> dict:
    """One batch; with `kill_after`, worker 1 is SIGKILLed once that many jobs are reported."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(CLI + args, stdout=subprocess.PIPE, stderr=err, text=True)
        lines, killed = [], None
        for line in proc.stdout:
            lines.append(json.loads(line))
            if kill_after is not None and killed is None and len(lines) >= kill_after:
                err.seek(0)
                up = re.search(r"ray: worker 1 up \(pid (\d+)", err.read())
                if up:
                    killed = int(up.group(1))
                    os.kill(killed, signal.SIGKILL)
        code = proc.wait()
        err.seek(0)
        stderr = err.read()
    wall = time.perf_counter() - t0
    retries = [ln for ln in stderr.splitlines() if "died running line" in ln]
    return {"wall": wall, "code": code, "lines": lines, "killed": killed, "retries": retries, "stderr": stderr}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--preset", default="toon-128")
    ap.add_argument("--workers", type=int, default=2, help="--jobs N of the local pool (the Ray run: one per CPU)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        manifest = folder / "jobs.jsonl"
        image, audio = ROOT / "examples" / "character_1.png", ROOT / "examples" / "speech_en.wav"
        rows = [{"image": str(image), "audio": str(audio), "out": f"v{i:02d}.mp4", "seed": i} for i in range(a.jobs)]
        manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
        common = ["render", "--manifest", str(manifest), "--preset", a.preset, "--seconds", str(a.seconds), "--json"]
        runs = {
            "local": run(common + ["--out-dir", str(folder / "local"), "--jobs", str(a.workers)]),
            "ray": run(common + ["--out-dir", str(folder / "ray"), "--ray", "local"]),
            "killed": run(common + ["--out-dir", str(folder / "killed"), "--ray", "local"], kill_after=a.jobs // 4),
        }
        want = {p.name: p.read_bytes() for p in (folder / "local").glob("*.mp4")}
        print(f"{a.jobs} jobs of {a.seconds:g} s, preset {a.preset}, {os.cpu_count()} CPUs")
        for name, r in runs.items():
            got = {p.name: p.read_bytes() for p in (folder / name).glob("*.mp4")}
            ok = sum(ln["status"] == "ok" for ln in r["lines"])
            same = "identical to local" if got == want and len(got) == a.jobs else "DIFFERENT from local"
            print(f"{name:>7}: {r['wall']:6.1f} s wall, exit {r['code']}, {ok}/{a.jobs} ok, {len(got)} videos {same}")
            if r["killed"]:
                print(f"         killed pid {r['killed']}; " + "; ".join(ln.strip() for ln in r["retries"]))
            if r["code"] != 0:
                print(r["stderr"][-2000:], file=sys.stderr)


if __name__ == "__main__":
    main()
