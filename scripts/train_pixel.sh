#!/usr/bin/env bash
# Issue "The MMDiT itself lip-syncs", item 6: the decoded mouth in the loss (--pixel-weight).
# The VAE's encoder blurs the mouth (its reconstruction of the truth reads 0.23 on the pixel check
# against the truth's 0.58), so a transformer trained only toward the encoder's latents cannot draw
# more mouth than that. The decoder can (docs/experiments.md, decoder inversion): this loss decodes
# the transformer's predicted clean latents through the frozen decoder and compares the mouth's
# pixels with the truth's.
#   base: scripts/train_hear.sh's pretrain (its cache built with --frames as well)
#   -> STEPS more pretrain steps with --pixel-weight W, and as the control the same steps without,
#      side by side (one thread each), from the same base, same data, same seed
#   -> the pixel check of base, control and pixel, lip refiner off, on held-out espeak voices and
#      on Festival's (docs/speech-engines.md), and the probe.
# BASE=runs/a17 CACHE=data/t128-speech6 OUT=runs/px bash scripts/train_pixel.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${BASE:-runs/a17}
CACHE=${CACHE:-data/t128-speech6}
OUT=${OUT:-runs/px}
HEAR="$BASE/toon-128-hear.yaml"
mkdir -p "$OUT"
[ -f "$CACHE/shard_0000.npz" ] && python -c "import numpy as np, sys; sys.exit('frames' not in np.load('$CACHE/shard_0000.npz').files)" \
  || { echo "train_pixel: $CACHE needs the clips' pixels: rebuild it with flowact cache --labels --frames" >&2; exit 2; }
common=(--stage pretrain --preset "$HEAR" --data "$CACHE" --init "$BASE/pretrain.safetensors" --batch 4 --lr 1e-4
  --warmup 10 --decay 0.3 --viseme-weight 1 --augment 0.3 --mouth-weight 10 --steps "${STEPS:-400}"
  --save-every 100 --resume --threads 1)
flowact train "${common[@]}" --out "$OUT/control" &
flowact train "${common[@]}" --pixel-weight "${W:-2}" --out "$OUT/pixel"
wait
models=(--model base="$BASE/pretrain.safetensors:lips=0,preset=$HEAR"
  --model control="$OUT/control/pretrain.safetensors:lips=0,preset=$HEAR"
  --model pixel="$OUT/pixel/pretrain.safetensors:lips=0,preset=$HEAR")
python scripts/mouth_check.py --preset toon-128 "${models[@]}" --clips 4 --seconds 8 --out "$OUT/mouth.json" &
python scripts/mouth_check.py --preset toon-128 "${models[@]}" --clips 4 --seconds 8 --engine festival \
  --out "$OUT/mouth_festival.json"
wait
python scripts/audio_probe.py --preset "$HEAR" "$BASE/pretrain.safetensors" "$OUT/control/pretrain.safetensors" \
  "$OUT/pixel/pretrain.safetensors" --threads 2 --json > "$OUT/probe.jsonl"
