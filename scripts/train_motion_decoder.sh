#!/usr/bin/env bash
# Teach the shipped toon-128 decoder to draw what the motion says (vae.motion, docs/motion-video.md):
#
#   decoder stage (the encoder, so the latent space the video model was trained on, frozen): each frame's
#   motion (the world's labels) read by the decoder's motion taps, grown at zero; half of the samples are
#   encoded from their frames drawn with the mouth at rest (--closed-input 0.5), the target as drawn.
#   The mouth's keep-out is trained again and switched on first (scripts/train_keepout.py: the blend
#   towards the reference, whose mouth is closed, would hide four fifths of whatever the decoder draws
#   there, docs/experiments.md; the taps draw where its map finds the mouth).
#
# On a 2-core CPU (two threads):  OUT=runs/mdec bash scripts/train_motion_decoder.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/mdec}
PRESET=${PRESET:-presets/toon-128.yaml}
INIT=${INIT:-src/flowact/assets/toon-128.safetensors}
mkdir -p "$OUT"
[ -f "$OUT/init.safetensors" ] || python scripts/train_keepout.py "$INIT" "$OUT/init.safetensors" --preset "$PRESET"
# only the taps train: with the rest of the decoder training too, it learns a mean open mouth that
# needs no motion (docs/motion-video.md)
flowact train --stage decoder --preset "$PRESET" --data synth:17 --init "$OUT/init.safetensors" --out "$OUT" \
  --only vae.decoder.taps. --batch 4 --lr 2e-3 --warmup 20 --decay 0.4 --motion-weight 4 --mouth-weight 20 \
  --closed-input 0.5 --speaking 0.7 --steps "${STEPS:-300}" --save-every 50 --resume --threads 2
# the keep-out lifted half way: fully lifted, the lower face around the mouth blurs (docs/motion-video.md)
python scripts/train_keepout.py "$OUT/decoder.safetensors" "$OUT/half.safetensors" --preset "$PRESET" --steps 0 --lift 0.5
# then: python scripts/ship_weights.py --weights "$OUT/half.safetensors" --preset presets/toon-128.yaml
