#!/usr/bin/env bash
# Train toon-128 end to end and ship it: the exact recipe of the bundled weights.
#
#   vae -> cache (latents of 512 training clips) -> pretrain  (diffusion forcing)
#                                                -> decoder   (VAE decoder only, same latents; in parallel)
#       -> selfforce -> distill (3 steps)
#   decoder -> refdecoder (the same decoder grown a reference branch: vae.ref_decoder)
#           -> refdecoder with --mouth-weight (the world's mouth masks)
#       -> lips (the lip refiner) -> visemes (its ear alone) -> calibrate (flowact.train.calibrate)
#       -> ship (bf16 into the package, sha256 into the preset)
#   ablation: distill straight from pretrain (no self-forcing), for the drift comparison
#
# Every stage resumes from its own checkpoint when run again. The shipped weights were made
# on a 2-core CPU with the defaults below (VAE: 800 steps, started with --lr 3e-4 for 650
# steps, then 6e-4); on a GPU use DEVICE=cuda and raise the STEPS_* for a better model.
#   OUT=runs/t128 bash scripts/train_toon128.sh
# On the GPU machine first: for f in .carry/debs/*.deb; do dpkg -x $f /; done; ldconfig;
#   pip install --no-deps .carry/wheels/*.whl; pip install --no-deps --no-build-isolation -e .
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/t128}
DEVICE=${DEVICE:-auto}
CACHE=${CACHE:-data/t128-latents}
T=${THREADS:-1}  # per process: two stages run side by side where they can
mkdir -p "$OUT"
# every stage before the last trains the plain decoder (no reference branch): the preset minus ref_decoder
PLAIN="$OUT/toon-128-plain.yaml"
sed 's/, ref_decoder: true//' presets/toon-128.yaml | grep -v '^lips:' > "$PLAIN"
common=(--preset "$PLAIN" --out "$OUT" --device "$DEVICE" --save-every 50 --resume --threads "$T")

flowact train --stage vae --data synth:7 --batch 4 --lr 3e-4 --steps "${STEPS_VAE:-800}" "${common[@]}"
flowact cache --preset "$PLAIN" --init "$OUT/vae.safetensors" --out "$CACHE" --clips "${CLIPS:-512}" --seconds 4 --part 0/2 --threads "$T" &
flowact cache --preset "$PLAIN" --init "$OUT/vae.safetensors" --out "$CACHE" --clips "${CLIPS:-512}" --seconds 4 --part 1/2 --threads "$T"
wait
INIT="$CACHE/init.safetensors"  # the VAE plus its latent statistics
flowact train --stage pretrain --data "$CACHE" --init "$INIT" --batch 8 --lr 4e-4 --warmup 50 --decay 0.2 \
  --steps "${STEPS_PRE:-1600}" "${common[@]}" &
flowact train --stage decoder --data synth:11 --init "$INIT" --batch 4 --lr 2e-4 --warmup 20 --decay 0.3 \
  --steps "${STEPS_DEC:-1200}" "${common[@]}"
wait
flowact train --stage selfforce --data "$CACHE" --init "$OUT/pretrain.safetensors" --batch 4 --lr 1e-4 --warmup 20 \
  --decay 0.3 --steps "${STEPS_SF:-120}" "${common[@]}" &
OUT_NOSF="$OUT-nosf"
flowact train --stage distill --data "$CACHE" --init "$OUT/pretrain.safetensors" --batch 4 --lr 1e-4 --warmup 20 \
  --decay 0.3 --teacher-steps 8 --steps "${STEPS_DIS:-60}" --preset "$PLAIN" --out "$OUT_NOSF" --device "$DEVICE" \
  --save-every 50 --resume --threads "$T"
wait
flowact train --stage distill --data "$CACHE" --init "$OUT/selfforce.safetensors" --batch 4 --lr 1e-4 --warmup 20 \
  --decay 0.3 --teacher-steps 8 --steps "${STEPS_DIS:-60}" "${common[@]}"
# the reference-conditioned decoder (the real preset), grown on the plain one (2 threads, one
# process; ~1.9 s/step on the 2-core CPU), then the same with the mouth weighted on its own
flowact train --stage decoder --preset presets/toon-128.yaml --data synth:11 --init "$OUT/decoder.safetensors" \
  --batch 4 --lr 4e-4 --warmup 50 --motion-weight 4 --steps "${STEPS_REF:-2200}" --out "$OUT/ref" \
  --device "$DEVICE" --save-every 100 --resume --threads "${THREADS_REF:-2}"
flowact train --stage decoder --preset presets/toon-128.yaml --data synth:13 --init "$OUT/ref/decoder.safetensors" \
  --batch 4 --lr 3e-4 --warmup 20 --decay 0.4 --motion-weight 4 --mouth-weight 20 --steps "${STEPS_MOUTH:-1100}" \
  --out "$OUT/ref-mouth" --device "$DEVICE" --save-every 100 --resume --threads "${THREADS_REF:-2}"
NOLIPS="$OUT/toon-128-nolips.yaml"  # the preset before the lip refiner
grep -v '^lips:' presets/toon-128.yaml > "$NOLIPS"
python scripts/ship_weights.py --preset "$NOLIPS" --weights "$OUT/distill.safetensors" \
  --decoder "$OUT/ref-mouth/decoder.safetensors" --out "$OUT/base.safetensors"
# the lip refiner (preset `lips:`), grown on the finished model: drawing and ear together on the
# world's frames with the mouth closed in its input, then the ear alone on audio the world
# makes without drawing (many more voices per second), then the ear's calibration
# one round: lips then visemes. lips_round DIR INIT LIPS_SEED EAR_SEED LR WARMUP DECAY LIPS_STEPS EAR_STEPS
lips_round() {
  local lips=(--preset presets/toon-128.yaml --speaking 0.7 --lr "$5" --warmup "$6" --decay "$7" --out "$1"
              --device "$DEVICE" --resume --threads "${THREADS_REF:-2}")
  flowact train --stage lips --data "synth:$3" --init "$2" --batch 8 --steps "$8" --save-every 50 "${lips[@]}"
  flowact train --stage visemes --data "synth:$4" --init "$1/lips.safetensors" --batch 32 --steps "$9" \
    --save-every 100 "${lips[@]}"
}
lips_round "$OUT/lips" "$OUT/base.safetensors" 31 41 1e-3 30 0.3 "${STEPS_LIPS:-500}" "${STEPS_EAR:-300}"
# round 2: both again, at half the learning rate
lips_round "$OUT/lips2" "$OUT/lips/visemes.safetensors" 33 43 5e-4 10 0.5 "${STEPS_LIPS2:-300}" "${STEPS_EAR2:-300}"
python -m flowact.train.calibrate --preset presets/toon-128.yaml --weights "$OUT/lips2/visemes.safetensors" \
  --out "$OUT/lips/calibrated.safetensors"
python scripts/ship_weights.py --weights "$OUT/lips/calibrated.safetensors"
