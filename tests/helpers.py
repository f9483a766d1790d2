"""Shared test helpers: the tiny preset, input files and an in-process CLI runner."""

from __future__ import annotations

import io
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np

TINY = str(Path(__file__).parent / "data" / "tiny.yaml")


def make_inputs(
    folder: Path, seconds: float = 1.0, rate: int = 22050, stereo: bool = False, size: tuple[int, int] = (80, 100)
) -> tuple[Path, Path]:
    from PIL import Image

    from flowact.media.audio import write_wav

    rng = np.random.default_rng(0)
    img = folder / "ref.png"
    Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)).save(img)
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 3 * t) > 0)
    if stereo:
        x = np.stack([x, 0.5 * x], axis=1)
    wav = folder / "speech.wav"
    write_wav(wav, x, rate)
    return img, wav


def run_cli(args: list[str]) -> tuple[int, str, str]:
    """Run `flowact ARGS` in-process through the real entry point; returns (code, stdout, stderr)."""
    from flowact.cli import main

    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["flowact", *args]
    code = 0
    try:
        with redirect_stdout(out), redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = argv
    return code, out.getvalue(), err.getvalue()


PORTRAITS = "pip install -e '.[dev]' (scikit-image, matplotlib and mahotas ship the portraits)"


def portrait(package: str, *parts: str):
    """A real portrait that ships inside a PyPI package (a PIL image), read from the installed package;
    a missing package fails the test, naming how to install it."""
    import pytest
    from PIL import Image

    try:
        module = __import__(package)
    except ImportError:
        pytest.fail(f"the portrait {parts[-1]} ships in the package {package}, which is not installed: {PORTRAITS}")
    path = Path(module.__file__).parent.joinpath(*parts)
    assert path.is_file(), f"{package} {getattr(module, '__version__', '')} no longer ships {path}"
    return Image.open(path)
