#!/usr/bin/env bash
# The frame-token audio path on toon-128 (issue "The MMDiT itself lip-syncs"): the exact run of
# 2026-12-02 (docs/experiments.md#the-frame-token-audio-path), on a 2-core CPU. Not shipped yet.
#
#   grow (the shipped weights, the new audio encoder seeded with the lip refiner's ear)
#   -> cache (256 training clips of 4 s, 60% opening with speech, with the world's mouth labels,
#      the shipped VAE's latent statistics kept)
#   -> pretrain (diffusion forcing, open mouth weighted 1 + 10, the encoder's mouth-parameter
#      error in the loss) -> distill (3 steps, guided teacher)
#   -> the probe, the pixel check and the judge on held-out characters and voices.
# Every stage resumes when run again. OUT=runs/a17 CACHE=data/t128-speech bash scripts/train_hear.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/a17}
CACHE=${CACHE:-data/t128-speech}
T=${THREADS:-1}  # one thread per process: on a busy 2-core machine two threads ran ~5x slower
mkdir -p "$OUT"
HEAR="$OUT/toon-128-hear.yaml"  # toon-128 with the frame-token audio path, no bundled weights
sed -e 's/width: 128}$/width: 96, frame_tokens: true}/' \
    -e 's/^  rope_axes: \[8, 12, 12\]/  rope_axes: [8, 12, 12]\n  audio_inject: true\n  audio_local: true/' \
    -e '/^weights:/,$d' presets/toon-128.yaml > "$HEAR"
grep -q 'frame_tokens: true' "$HEAR" && grep -q 'audio_local: true' "$HEAR"
SHIPPED=src/flowact/assets/toon-128.safetensors
[ -f "$OUT/grown.safetensors" ] || python scripts/grow_audio.py --preset "$HEAR" --weights "$SHIPPED" --out "$OUT/grown.safetensors"
# two processes share the shards (the run of record built shards 0 and 1 of 3 and stopped: 256 clips)
flowact cache --init "$SHIPPED" --out "$CACHE" --clips "${CLIPS:-256}" --speaking 0.6 --labels --keep-stats \
  --seed 5 --part 0/2 --threads "$T" &
flowact cache --init "$SHIPPED" --out "$CACHE" --clips "${CLIPS:-256}" --speaking 0.6 --labels --keep-stats \
  --seed 5 --part 1/2 --threads "$T"
wait
common=(--preset "$HEAR" --data "$CACHE" --out "$OUT" --save-every 50 --resume --threads "$T")
# the run of record went 0 -> 550 with --steps 1000, then resumed with --steps 1500 (the schedule's
# decay then starts at 1050)
flowact train --stage pretrain --init "$OUT/grown.safetensors" --batch 4 --lr 2e-4 --warmup 50 --decay 0.3 \
  --mouth-weight 10 --viseme-weight 1 --steps "${STEPS_PRE:-1500}" "${common[@]}"
flowact train --stage distill --init "$OUT/pretrain.safetensors" --batch 4 --lr 1e-4 --warmup 10 --decay 0.3 \
  --teacher-steps 8 --mouth-weight 10 --steps "${STEPS_DIS:-50}" "${common[@]}"
python scripts/audio_probe.py --preset "$HEAR" "$OUT/grown.safetensors" "$OUT/pretrain.safetensors" --threads "$T"
S="$SHIPPED"
python scripts/mouth_check.py --preset toon-128 --model shipped_nolips="$S:lips=0" \
  --model distill_nolips="$OUT/distill.safetensors:lips=0,preset=$HEAR" --model shipped="$S" \
  --model distill="$OUT/distill.safetensors:preset=$HEAR" --clips 4 --seconds 8 --out "$OUT/mouth.json"
python scripts/eval_model.py --preset toon-128 --model shipped_nolips="$S:lips=0" \
  --model distill_nolips="$OUT/distill.safetensors:lips=0,preset=$HEAR" --model shipped="$S" \
  --model distill="$OUT/distill.safetensors:preset=$HEAR" --clips 4 --seconds 8 --out "$OUT/eval.json"
