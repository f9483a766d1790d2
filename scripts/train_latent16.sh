#!/usr/bin/env bash
# A latent space that keeps the mouth (issue "The MMDiT itself lip-syncs"), on a 2-core CPU:
# docs/experiments.md#the-latent-space-is-the-wall has the runs and their scores.
#
# The shipped VAE's 8 latent channels lose the open mouth: its reconstruction of the held-out
# clips reads 0.23 on the pixel check (ground truth 0.58), about what the transformer reaches.
#   grow (the frame-token model of scripts/train_hear.sh, 8 -> 16 latent channels, nothing changes yet)
#   -> vae (encoder and decoder, the open mouth weighted 1 + 20, 60% speech windows)
# Then score the reconstruction with scripts/mouth_check.py (its vae_reconstruction row). The run
# of record read 0.277 after 300 steps against the shipped VAE's 0.231, within the check's noise
# but for one clip, so the transformer stages were not run on it (docs/experiments.md).
# Every stage resumes when run again. OUT=runs/l16 FROM=runs/a17/memory3500.safetensors bash scripts/train_latent16.sh

set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/l16}
FROM=${FROM:-runs/a17/memory3500.safetensors}
T=${THREADS:-2}
mkdir -p "$OUT"
L16="$OUT/toon-128-l16.yaml"
[ -f runs/a17/toon-128-hear.yaml ] || { echo "run scripts/train_hear.sh first (its preset and weights)" >&2; exit 2; }
sed -e 's/latent_channels: 8,/latent_channels: 16,/' runs/a17/toon-128-hear.yaml > "$L16"
grep -q 'latent_channels: 16' "$L16"
[ -f "$OUT/grown.safetensors" ] || python scripts/grow_latent.py --preset "$L16" --weights "$FROM" --out "$OUT/grown.safetensors"
flowact train --stage vae --preset "$L16" --init "$OUT/grown.safetensors" --data synth:41 --speaking 0.6 \
  --mouth-weight 20 --motion-weight 4 --batch 4 --lr 3e-4 --warmup 20 --steps "${STEPS_VAE:-300}" \
  --save-every 50 --resume --threads "$T" --out "$OUT"
