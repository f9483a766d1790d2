"""Train the evaluator (`flowact eval`'s judge) from the synthetic world, reproducibly.

    python scripts/train_judge.py                 # ~21 min on a 2-core CPU
    python scripts/train_judge.py --steps 50 --audio-steps 20 --out /tmp/judge.safetensors

Writes src/flowact/assets/judge.safetensors (weights + metadata) and judge.json beside
it (held-out accuracy on characters never seen in training).
"""

from __future__ import annotations

import argparse

from flowact.judge import train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=600, help="vision training steps (10 clips x 17 frames each)")
    ap.add_argument("--audio-steps", type=int, default=150, help="audio-to-mouth training steps")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--heldout", type=int, default=40, help="held-out characters for the accuracy report")
    ap.add_argument("--state-steps", type=int, default=600, help="state-head steps (stage two, frozen readings)")
    ap.add_argument(
        "--init", default=None, help="keep the audio model and frame judge of these weights; run stage two only"
    )
    ap.add_argument("--out", default=None, help="weights path (default: the packaged asset)")
    ap.add_argument("--runs", default="runs/judge", help="each stage's log and checkpoints")
    ap.add_argument("--resume", action="store_true", help="continue each stage from its checkpoint in --runs")
    a = ap.parse_args()
    train.main(
        steps=a.steps,
        audio_steps=a.audio_steps,
        seed=a.seed,
        out=a.out,
        threads=a.threads,
        heldout=a.heldout,
        state_steps=a.state_steps,
        init=a.init,
        runs=a.runs,
        resume=a.resume,
    )


if __name__ == "__main__":
    main()
