#!/usr/bin/env bash
# Train toon-128 end to end: vae -> pretrain -> selfforce -> distill, each stage resuming
# from its own checkpoint if one exists, each starting from the previous stage's weights.
#   STEPS_VAE=.. STEPS_PRE=.. STEPS_SF=.. STEPS_DIS=.. OUT=runs/toon-128 DEVICE=cuda bash scripts/train_toon128.sh
# On the GPU machine first: for f in .carry/debs/*.deb; do dpkg -x $f /; done; ldconfig;
#   pip install --no-deps .carry/wheels/*.whl; pip install --no-deps -e .
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/toon-128}
DEVICE=${DEVICE:-auto}
BATCH=${BATCH:-8}
DATA=${DATA:-synth:1}
common=(--preset toon-128 --data "$DATA" --out "$OUT" --device "$DEVICE" --batch "$BATCH" --resume --json)
flowact train --stage vae --steps "${STEPS_VAE:-3000}" --lr 3e-4 "${common[@]}"
flowact train --stage pretrain --steps "${STEPS_PRE:-20000}" --init "$OUT/vae.safetensors" "${common[@]}"
flowact train --stage selfforce --steps "${STEPS_SF:-2000}" --lr 5e-5 --init "$OUT/pretrain.safetensors" "${common[@]}"
flowact train --stage distill --steps "${STEPS_DIS:-2000}" --lr 5e-5 --init "$OUT/selfforce.safetensors" "${common[@]}"
