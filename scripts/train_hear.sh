#!/usr/bin/env bash
# The frame-token audio path on toon-128 (issue "The MMDiT itself lip-syncs"), on a 2-core CPU:
# docs/experiments.md#the-frame-token-audio-path has the runs and their scores.
#
#   grow (the shipped weights, the new audio encoder seeded with the lip refiner's ear)
#   -> cache (256 training clips of 6 s, 60% opening with speech, with the world's mouth labels,
#      the shipped VAE's latent statistics kept)
#   -> pretrain (diffusion forcing, open mouth weighted 1 + 10, the encoder's mouth-parameter
#      error in the loss, 30% of the samples heard through another microphone)
#   -> memory (the same loss, teacher-forced through the real memory bank: every slot layout)
#   -> distill (3 steps, guided teacher, over the same layouts)
#   -> the probe, the pixel check and the judge on held-out characters and voices.
# Every stage resumes when run again. OUT=runs/a17 CACHE=data/t128-speech6 bash scripts/train_hear.sh
# The run of record (docs/experiments.md, 2026-12-03) stopped distill at 30 steps (STEPS_DIS=30).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/a17}
CACHE=${CACHE:-data/t128-speech6}
T=${THREADS:-2}
mkdir -p "$OUT"
HEAR="$OUT/toon-128-hear.yaml"  # toon-128 with the frame-token audio path, no bundled weights
sed -e 's/width: 128}$/width: 96, frame_tokens: true}/' \
    -e 's/^  rope_axes: \[8, 12, 12\]/  rope_axes: [8, 12, 12]\n  audio_inject: true\n  audio_local: true/' \
    -e '/^weights:/,$d' presets/toon-128.yaml > "$HEAR"
grep -q 'frame_tokens: true' "$HEAR" && grep -q 'audio_local: true' "$HEAR"
SHIPPED=src/flowact/assets/toon-128.safetensors
[ -f "$OUT/grown.safetensors" ] || python scripts/grow_audio.py --preset "$HEAR" --weights "$SHIPPED" --out "$OUT/grown.safetensors"
# two processes share the shards (one thread each)
flowact cache --init "$SHIPPED" --out "$CACHE" --clips "${CLIPS:-256}" --seconds 6 --speaking 0.6 --labels \
  --keep-stats --seed 5 --part 0/2 --threads 1 &
flowact cache --init "$SHIPPED" --out "$CACHE" --clips "${CLIPS:-256}" --seconds 6 --speaking 0.6 --labels \
  --keep-stats --seed 5 --part 1/2 --threads 1
wait
common=(--preset "$HEAR" --data "$CACHE" --out "$OUT" --save-every 50 --resume --threads "$T" --mouth-weight 10)
flowact train --stage pretrain --init "$OUT/grown.safetensors" --batch 4 --lr 2e-4 --warmup 50 --decay 0.3 \
  --viseme-weight 1 --augment 0.3 --steps "${STEPS_PRE:-2000}" "${common[@]}"
flowact train --stage memory --init "$OUT/pretrain.safetensors" --batch 4 --lr 1e-4 --warmup 10 --decay 0.3 \
  --viseme-weight 1 --augment 0.3 --steps "${STEPS_MEM:-300}" "${common[@]}"
flowact train --stage distill --init "$OUT/memory.safetensors" --batch 4 --lr 1e-4 --warmup 10 --decay 0.3 \
  --teacher-steps 8 --steps "${STEPS_DIS:-60}" "${common[@]}"
