#!/usr/bin/env bash
# Round 2 of the bundled toon-128 weights: continue from round 1 (scripts/train_toon128.sh),
# with the self-forcing ablation trained from the same base.
#
#   round-1 student --pretrain (more diffusion forcing: back to a many-step flow model)--> base
#     base -> selfforce -> distill (3 steps)          = the shipped student
#     base -> distill (3 steps), no self-forcing      = the ablation, for the drift comparison
#   round-1 decoder --decoder stage with --motion-weight--> a decoder that spends its capacity
#     on what moves (mouth, eyes, hands) instead of the static background
#
# The VAE encoder, so the latent space and the latent cache, stay those of round 1.
#   OUT=runs/r2 bash scripts/train_toon128_round2.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/r2}
R1=${R1:-src/flowact_cli/assets/toon-128.safetensors}  # round 1 (the weights bundled before round 2)
DEVICE=${DEVICE:-auto}
CACHE=${CACHE:-data/t128-latents}
T=${THREADS:-1}
common=(--preset toon-128 --device "$DEVICE" --save-every 50 --resume --threads "$T")

if [ ! -f "$CACHE/cache.json" ]; then
  flowact cache --init "$R1" --out "$CACHE" --clips "${CLIPS:-512}" --seconds 4 --part 0/2 --threads "$T" &
  flowact cache --init "$R1" --out "$CACHE" --clips "${CLIPS:-512}" --seconds 4 --part 1/2 --threads "$T"
  wait
fi
flowact train --stage pretrain --data "$CACHE" --init "$R1" --batch 8 --lr 2e-4 --warmup 50 --decay 0.3 \
  --steps "${STEPS_PRE:-1000}" --out "$OUT" "${common[@]}" &
flowact train --stage decoder --data synth:13 --init "$R1" --batch 4 --lr 2e-4 --warmup 20 --decay 0.3 \
  --motion-weight 4 --steps "${STEPS_DEC:-1200}" --out "$OUT" "${common[@]}"
wait
flowact train --stage selfforce --data "$CACHE" --init "$OUT/pretrain.safetensors" --batch 4 --lr 1e-4 --warmup 20 \
  --decay 0.3 --steps "${STEPS_SF:-120}" --out "$OUT" "${common[@]}" &
flowact train --stage distill --data "$CACHE" --init "$OUT/pretrain.safetensors" --batch 4 --lr 1e-4 --warmup 20 \
  --decay 0.3 --teacher-steps 8 --steps "${STEPS_DIS:-60}" --out "$OUT-nosf" "${common[@]}"
wait
flowact train --stage distill --data "$CACHE" --init "$OUT/selfforce.safetensors" --batch 4 --lr 1e-4 --warmup 20 \
  --decay 0.3 --teacher-steps 8 --steps "${STEPS_DIS:-60}" --out "$OUT" "${common[@]}"
python scripts/ship_weights.py --weights "$OUT/distill.safetensors" --decoder "$OUT/decoder.safetensors"
