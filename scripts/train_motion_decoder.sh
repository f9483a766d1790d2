#!/usr/bin/env bash
# Teach the shipped toon-128 decoder to draw what the motion says (vae.motion, docs/motion-video.md):
#
#   decoder stage (the encoder, so the latent space the video model was trained on, frozen): each frame's
#   motion (the world's labels) read by the decoder's motion taps, grown at zero; half of the samples are
#   encoded from their frames drawn with the mouth at rest (--closed-input 0.5), the target as drawn.
#
# On a 2-core CPU (two threads):  OUT=runs/mdec bash scripts/train_motion_decoder.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/mdec}
PRESET=${PRESET:-presets/toon-128.yaml}
INIT=${INIT:-src/flowact/assets/toon-128.safetensors}
mkdir -p "$OUT"
flowact train --stage decoder --preset "$PRESET" --data synth:17 --init "$INIT" --out "$OUT" \
  --batch 4 --lr 3e-4 --warmup 20 --decay 0.4 --motion-weight 4 --mouth-weight 20 --closed-input 0.5 --speaking 0.7 \
  --steps "${STEPS:-600}" --save-every 50 --resume --threads 2
