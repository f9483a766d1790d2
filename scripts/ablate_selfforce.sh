#!/usr/bin/env bash
# The self-forcing ablation: two 3-step students distilled from one common base, one with the
# self-forcing stage and one without, scored on held-out characters and in 5-minute streams.
#
#   bundled toon-128 --pretrain 2000 steps (diffusion forcing; back to a many-step flow model)--> base
#     base -> selfforce 200 -> distill 100 (3 steps)   = "sf"
#     base -> distill 100 (3 steps)                    = "nosf"
#
# The VAE (so the latent space and the latent cache) is the bundled one. This is what the
# 2026-11-30 session ran on the 2-core CPU (one thread per process: the cache about 14 min,
# pretrain 48 min, then about 15 min for the rest); the figures are in docs/experiments.md (the self-forcing ablation) and docs/training-toon128.md.
#   OUT=runs/r2 bash scripts/ablate_selfforce.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/r2}
BASE=${BASE:-src/flowact/assets/toon-128.safetensors}
DEVICE=${DEVICE:-auto}
CACHE=${CACHE:-data/t128-latents}
T=${THREADS:-1}
common=(--preset toon-128 --device "$DEVICE" --save-every 50 --resume --threads "$T")

if [ ! -f "$CACHE/cache.json" ]; then  # 512 training clips of 4 s, encoded once
  flowact cache --init "$BASE" --out "$CACHE" --clips 512 --seconds 4 --part 0/2 --threads "$T" &
  flowact cache --init "$BASE" --out "$CACHE" --clips 512 --seconds 4 --part 1/2 --threads "$T"
  wait
fi
flowact train --stage pretrain --data "$CACHE" --init "$BASE" --batch 8 --lr 2e-4 --warmup 50 --decay 0.3 \
  --steps 2000 --out "$OUT" "${common[@]}"
flowact train --stage selfforce --data "$CACHE" --init "$OUT/pretrain.safetensors" --batch 4 --lr 1e-4 --warmup 20 \
  --decay 0.3 --steps 200 --out "$OUT" "${common[@]}" &
flowact train --stage distill --data "$CACHE" --init "$OUT/pretrain.safetensors" --batch 4 --lr 1e-4 --warmup 20 \
  --decay 0.3 --teacher-steps 8 --steps 100 --out "$OUT-nosf" "${common[@]}"
wait
flowact train --stage distill --data "$CACHE" --init "$OUT/selfforce.safetensors" --batch 4 --lr 1e-4 --warmup 20 \
  --decay 0.3 --teacher-steps 8 --steps 100 --out "$OUT" "${common[@]}"

# score them as they would ship (bf16), beside the bundled model and the guided 8-step teacher
python scripts/ship_weights.py --weights "$OUT/distill.safetensors" --out "$OUT/ship/sf.safetensors"
python scripts/ship_weights.py --weights "$OUT-nosf/distill.safetensors" --out "$OUT/ship/nosf.safetensors"
python scripts/eval_model.py --model sf="$OUT/ship/sf.safetensors" --model nosf="$OUT/ship/nosf.safetensors" \
  --model bundled="$BASE" --model teacher="$OUT/selfforce.safetensors:steps=8,guidance=2" \
  --clips 6 --seconds 8 --out "$OUT/eval-clips.json"
for seed in 0 1 2; do
  python scripts/eval_model.py --model sf="$OUT/ship/sf.safetensors" --model nosf="$OUT/ship/nosf.safetensors" \
    --clips 0 --drift 10,60,300 --drift-seed "$seed" --out "$OUT/eval-drift-$seed.json"
done
