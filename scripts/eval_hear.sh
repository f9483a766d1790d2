#!/usr/bin/env bash
# Scores of the frame-token audio path (scripts/train_hear.sh) against the shipped toon-128, on
# held-out characters and voices: the probe, the pixel check (espeak and Festival voices) and the judge (lip refiner off and on),
# then 5-minute drift streams of the new model on 3 characters (the shipped model's are in
# docs/experiments.md, same seeds). NEW=runs/a17/distill.safetensors bash scripts/eval_hear.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/a17}
HEAR="$OUT/toon-128-hear.yaml"
NEW=${NEW:-$OUT/distill.safetensors}
S=src/flowact/assets/toon-128.safetensors
python scripts/audio_probe.py --preset "$HEAR" "$OUT/grown.safetensors" "$OUT/pretrain.safetensors" \
  "$OUT/memory.safetensors" "$NEW" --threads 2 --json > "$OUT/probe.jsonl"
models=(--model shipped_nolips="$S:lips=0" --model new_nolips="$NEW:lips=0,preset=$HEAR" --model shipped="$S"
  --model new="$NEW:preset=$HEAR")
python scripts/mouth_check.py --preset toon-128 "${models[@]}" --clips 4 --seconds 8 --out "$OUT/mouth.json" &
python scripts/eval_model.py --preset toon-128 "${models[@]}" --clips 4 --seconds 8 --out "$OUT/eval.json"
wait
# the same pixel check on Festival's voices: an engine no model heard (docs/speech-engines.md)
python scripts/mouth_check.py --preset toon-128 "${models[@]}" --clips 4 --seconds 8 --engine festival \
  --out "$OUT/mouth_festival.json"
if [ "${DRIFT:-1}" = 1 ]; then
  for seed in 0 1 2; do
    python scripts/eval_model.py --preset toon-128 --model new_nolips="$NEW:lips=0,preset=$HEAR" --clips 0 \
      --drift 10,60,300 --drift-seed "$seed" --out "$OUT/drift$seed.json" &
    [ "$seed" = 1 ] && wait
  done
  wait
fi
