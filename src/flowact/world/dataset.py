"""Read a `flowact synth` folder back: clips as frames, audio, reference, and labels as arrays.

For training without any disk at all, `generate_clips` yields clips straight from the
generator (frames rendered on demand), with the same labels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import FlowactError
from .behaviour import STATES
from .visemes import MOUTH_KEYS


@dataclass(frozen=True)
class LabelArrays:
    """Per-frame ground truth as arrays (frames first)."""

    mouth: np.ndarray  # (frames, 5) open, width, round, closed, teeth
    head: np.ndarray  # (frames, 3) yaw, pitch, roll in [-1, 1]
    joints: np.ndarray  # (frames, 6, 2) label coordinates (see labels["coordinates"])
    gaze: np.ndarray  # (frames, 2)
    blink: np.ndarray  # (frames,)
    state: np.ndarray  # (frames,) int index into STATES


def label_arrays(labels: dict) -> LabelArrays:
    pf = labels["per_frame"]
    f32 = lambda v: np.asarray(v, np.float32)  # noqa: E731
    return LabelArrays(
        mouth=np.stack([f32(pf["mouth"][k]) for k in MOUTH_KEYS], 1),
        head=np.stack([f32(pf["head"][k]) for k in ("yaw", "pitch", "roll")], 1),
        joints=f32(pf["joints"]).reshape(-1, 6, 2),
        gaze=f32(pf["gaze"]).reshape(-1, 2),
        blink=f32(pf["blink"]),
        state=np.asarray(pf["state"], np.int64),
    )


@dataclass
class ClipRecord:
    name: str
    video: Path
    wav: Path
    reference_path: Path
    labels_path: Path

    @cached_property
    def labels(self) -> dict:
        try:
            return json.loads(self.labels_path.read_text())
        except (OSError, ValueError) as exc:
            raise FlowactError(f"cannot read labels ({exc})", path=self.labels_path) from exc

    @property
    def arrays(self) -> LabelArrays:
        return label_arrays(self.labels)

    def frames(self) -> np.ndarray:
        """Decoded video, uint8 (frames, height, width, 3)."""
        from ..media.probe import read_frames

        return read_frames(self.video)

    def audio(self) -> np.ndarray:
        """16 kHz mono float32 samples."""
        from ..media.audio import load_audio

        return load_audio(self.wav, allow_silent=True).samples

    def reference(self) -> np.ndarray:
        from PIL import Image

        with Image.open(self.reference_path) as im:
            return np.asarray(im.convert("RGB"))


class SynthDataset:
    """The clips of a synth folder, in order. `len()`, indexing and iteration give ClipRecords."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FlowactError("synth folder not found", path=self.root)
        names = sorted(p.name[: -len(".json")] for p in self.root.glob("clip_*.json"))
        if not names:
            raise FlowactError("no clips here (expected clip_*.json from `flowact synth`)", path=self.root)
        self.records = [
            ClipRecord(
                n, self.root / f"{n}.mp4", self.root / f"{n}.wav", self.root / f"{n}.ref.png", self.root / f"{n}.json"
            )
            for n in names
        ]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> ClipRecord:
        return self.records[i]

    def __iter__(self) -> Iterator[ClipRecord]:
        return iter(self.records)


def generate_clips(seed: int, seconds: float, width: int, height: int, count: int | None = None) -> Iterator:
    """Clips made on the fly (`world.clip.Clip`), seeds as `flowact synth --seed` would use them."""
    from .clip import clip_seed, make_clip

    i = 0
    while count is None or i < count:
        yield make_clip(clip_seed(seed, i), seconds, width, height)
        i += 1


__all__ = ["STATES", "ClipRecord", "LabelArrays", "SynthDataset", "generate_clips", "label_arrays"]
