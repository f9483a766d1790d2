#!/usr/bin/env bash
# Teach the shipped toon-128 video model to read the motion (model.motion_inject, docs/motion-video.md):
#
#   cache (512 training clips of 4 s, encoded once by the shipped VAE, with the world's labels: mouth,
#          head, body and arms per frame) -> pretrain (chunkwise diffusion forcing, the motion given)
#
# The shipped transformer, encoders, decoder and lip refiner are the start; the motion map grows at zero.
# On a 2-core CPU (one process a core for the cache, two threads for training):
#   OUT=runs/mv bash scripts/train_motion_video.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/mv}
CACHE=${CACHE:-runs/mcache}
PRESET=${PRESET:-presets/toon-128.yaml}
mkdir -p "$OUT"
SHIPPED=src/flowact/assets/toon-128.safetensors
cache=(--init "$SHIPPED" --out "$CACHE" --clips "${CLIPS:-512}" --seconds 4 --labels --keep-stats --speaking 0.5 --threads 1)
flowact cache "${cache[@]}" --part 0/2 &
flowact cache "${cache[@]}" --part 1/2
wait
flowact train --stage pretrain --preset "$PRESET" --init "$CACHE/init.safetensors" --data "$CACHE" --out "$OUT" \
  --batch 8 --lr 3e-4 --warmup 50 --decay 0.2 --steps "${STEPS_PRE:-1000}" --threads 2 --save-every 50 --resume
# Distillation to one step (2026-12-07, docs/motion-video.md "Distilled to one step"), run once the decoder stages
# and rigs are in (scripts/train_motion_decoder.sh, scripts/train_rig.py): TEACHER is that 3-step model, complete
# (transformer, encoders, decoder, rigs; e.g. the package's toon-128.safetensors of commit fd7dc4b). The cache's
# motion is replaced by the motion engine's (what a render gives the video model); the student (the preset with
# sampler.steps 1) learns the teacher's 6 Euler steps in one, both told that motion (12 minutes on 2 cores).
if [ -n "${TEACHER:-}" ]; then
  python scripts/engine_motion_cache.py "$CACHE" "$CACHE-engine" --threads 2
  sed 's/^sampler: {steps: [0-9]*,/sampler: {steps: 1,/' "$PRESET" | grep -v sha256 > "$OUT/toon-128-1step.yaml"
  flowact train --stage distill --preset "$OUT/toon-128-1step.yaml" --data "$CACHE-engine" --init "$TEACHER" \
    --teacher "$TEACHER" --guidance 1 --teacher-steps 6 --batch 4 --lr 1e-4 --warmup 20 --decay 0.3 \
    --steps "${STEPS_DIS:-200}" --threads 2 --save-every 25 --resume --out "$OUT/one-step"
  # then self-forcing: the student rolls its context out itself (one step a chunk, the engine's motion) and the
  # teacher is shown those latents; 150 steps, about 9 minutes alone
  flowact train --stage distill --self-context --preset "$OUT/toon-128-1step.yaml" --data "$CACHE-engine" \
    --init "$OUT/one-step/distill.safetensors" --teacher "$TEACHER" --guidance 1 --teacher-steps 6 --batch 4 \
    --lr 1e-4 --warmup 10 --decay 0.3 --steps "${STEPS_SC:-150}" --threads 2 --save-every 25 --resume \
    --out "$OUT/one-step-own"
  # python scripts/ship_weights.py --weights "$OUT/one-step-own/distill.safetensors" --preset presets/toon-128.yaml
fi
