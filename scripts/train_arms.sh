#!/usr/bin/env bash
# Gestures for toon-128 (docs/motion-video.md, "Gestures"): the arms' rig, then the decoder told where the
# arms are, on a preset with `vae.arms: true` (presets/toon-128.yaml has it). The motion engine that makes
# the arms is trained apart: OUT=runs/motion_arms bash scripts/train_motion.sh --arms (about 14 minutes).
#
#   bash scripts/train_arms.sh        # writes $OUT/rig.safetensors, then $OUT/decoder.safetensors
#   python scripts/ship_weights.py --weights $OUT/decoder.safetensors
#
# On the 2-core AMD EPYC: the rig 8 minutes (4000 characters drawn, 2000 steps), the decoder 16 minutes
# (300 steps of batch 4, the world drawn in line).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/arms}
PRESET=${PRESET:-presets/toon-128.yaml}
INIT=${INIT:-src/flowact/assets/toon-128.safetensors}
mkdir -p "$OUT"
[ -f "$OUT/rig.safetensors" ] || python scripts/train_rig.py --preset "$PRESET" --weights "$INIT" \
  --out "$OUT/rig.safetensors" --steps 2000
# the decoder's layers and its new arm inputs (the keep-out, the mouth taps and the rig stay as they are)
ONLY=$(for k in conv_in res0 time_up up1 res1 up2 res2 up3 norm_out conv_out alpha_out ref arms_in; do
  printf "vae.decoder.%s.," "$k"; done)
flowact train --stage decoder --preset "$PRESET" --data synth:19 --init "$OUT/rig.safetensors" --out "$OUT/dec" \
  --only "${ONLY%,}" --batch 4 --lr 3e-4 --warmup 20 --decay 0.4 --motion-weight 4 --mouth-weight 5 \
  --speaking 0.5 --steps "${STEPS:-300}" --save-every 50 --resume --threads 2
cp "$OUT/dec/decoder.safetensors" "$OUT/decoder.safetensors"
