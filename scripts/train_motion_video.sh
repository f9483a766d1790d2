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
