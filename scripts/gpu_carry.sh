#!/usr/bin/env bash
# Prepare what the GPU machine (device tool: no network, no apt, Python 3.12, torch 2.11)
# needs to run flowact's training, into the ignored folder .carry/ (name it in `carry`):
#   .carry/debs   espeak-ng and its libraries (speech for the synthetic world), unpacked there
#   .carry/wheels the pure/py3.12 wheels the machine lacks (soundfile, soxr, imageio-ffmpeg 0.6.0
#                 whose wheel fits the 64 MiB carry limit, silero-vad)
# For the benchmark run use `bash scripts/gpu_bench.sh prepare` (.carry/bench, 22 MiB) instead: all of .carry/
# beside the 36 MB bundled weights is over the 64 MiB carry limit.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .carry/debs .carry/wheels
grep -qx "/.carry/" .git/info/exclude 2>/dev/null || echo "/.carry/" >> .git/info/exclude
(cd .carry/debs && apt-get download espeak-ng-data libespeak-ng1 libpcaudio0 libsonic0 >/dev/null)
python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
  --platform manylinux_2_17_x86_64 --platform any -d .carry/wheels \
  "imageio-ffmpeg==0.6.0" "soundfile>=0.12" cffi pycparser "soxr>=0.3" "silero-vad>=6.2" packaging
du -sh .carry
