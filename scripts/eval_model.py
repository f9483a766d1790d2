"""Score trained toon-128 weights with the judge on held-out characters and voices.

    python scripts/eval_model.py --model student=runs/t128/distill.safetensors \
        --model teacher=runs/t128/selfforce.safetensors:steps=16,guidance=2 \
        --clips 6 --seconds 8 --drift 10,60,300 --out runs/t128/eval.json

Each --model is NAME=WEIGHTS[:steps=N,guidance=G,guide_on=audio,guide_below=T,dtype=D,int8=1,lips=0,preset=P]
(default: the preset's 3 steps, no guidance, --dtype; guide_on / guide_below as `flowact train --stage distill`'s
--guide-on / --guide-below; int8=1 quantises the transformer's block linears as a CPU without native
bf16 runs them; lips=0 drops the lip refiner, as `flowact render --no-lips`; preset=P: the model's
own preset instead of --preset, at the same size; motion=engine|labels: for a video model that reads
motion, the bundled motion engine's (default, what a render does) or the world's own labels;
motion=PATH: the motion engine of that weights file); mute=1: the video model hears silence (its audio tokens
zero, as training drops them), the motion engine still the speech.
Prints one line per clip and model, then a JSON summary (also written to --out).
Drift streams one held-out character for the longest mark, once per model given to --drift-models.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch


def parse_model(text: str):
    name, _, rest = text.partition("=")
    path, _, opts = rest.partition(":")
    kw = {}
    for item in filter(None, opts.split(",")):
        k, _, v = item.partition("=")
        text_keys = ("dtype", "preset", "guide_on", "motion")
        kw[k] = int(v) if k in ("steps", "int8", "lips", "mute") else v if k in text_keys else float(v)
    return name, Path(path), kw


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", required=True, help="NAME=WEIGHTS[:steps=N,guidance=G]")
    ap.add_argument("--preset", default="toon-128")
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--drift", default="", help="marks in seconds, e.g. 10,60,300 (empty: no drift run)")
    ap.add_argument("--drift-models", default="", help="comma-separated model names for drift (default: all)")
    ap.add_argument(
        "--drift-seed", type=int, default=0, help="which held-out character, voice and noise the drift stream uses"
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--engine", default="espeak", choices=["espeak", "festival"], help="held-out clips' speech engine")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    ap.add_argument("--judge", default=None, help="the judge's weights (default: the shipped assets/judge.safetensors)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    from flowact import weights as W
    from flowact.config import load_preset
    from flowact.model import FlowActModel
    from flowact.train.evaluate import drift, evaluate_models

    torch.set_num_threads(args.threads)
    preset = load_preset(args.preset)
    models = {}
    for spec in args.model:
        name, path, kw = parse_model(spec)
        own = load_preset(kw.pop("preset")) if "preset" in kw else preset
        m = FlowActModel(own)
        W.load_into(m, W.resolve(own, weights=path))
        m.eval().to(getattr(torch, kw.pop("dtype", args.dtype)))
        if not kw.pop("lips", 1):
            m.lips = None
        if kw.pop("int8", 0):
            from flowact.model.quant import quantize_blocks

            m.dit, why = quantize_blocks(m.dit)
            if why:
                raise SystemExit(f"--model {spec}: {why}")
        models[name] = (m, kw)
    t0 = time.perf_counter()
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    report = {
        "conditions": {
            "device": f"CPU x{args.threads} threads",
            "dtype": args.dtype,
            "clips": args.clips,
            "seconds": args.seconds,
            "held_out": "characters with seed 7 mod 16, "
            + ("voices m7/f5/klatt3" if args.engine == "espeak" else "Festival voices (docs/speech-engines.md)"),
            "models": {
                n: {"weights": str(parse_model(s)[1]), **kw} for s in args.model for n, _, kw in [parse_model(s)]
            },
        }
    }
    if args.clips:
        report["clips"] = evaluate_models(models, args.clips, args.seconds, log, engine=args.engine, judge=args.judge)
    if args.drift:
        marks = tuple(float(v) for v in args.drift.split(","))
        names = [n for n in args.drift_models.split(",") if n] or list(models)
        report["drift"] = {
            n: drift(
                models[n][0], marks, seed=args.drift_seed, log=log, engine=args.engine, judge=args.judge, **models[n][1]
            )
            for n in names
        }
    report["seconds_taken"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
