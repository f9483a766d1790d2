"""One training sample and the small pure helpers every data source shares (the synthetic
world, synth folders, real-video folders and latent caches): data.py and cache.py both
build `Sample`s from these, so neither imports the other's private helpers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..world import FPS  # the world's frame rate; presets are validated to it (config.py)


@dataclass
class Sample:
    reference: np.ndarray  # uint8 (H, W, 3)
    frames: np.ndarray | None  # uint8 (4 * latents, H, W, 3); None when served from a latent cache
    audio: np.ndarray  # float32 16 kHz covering exactly the frames
    prompts: list[str]  # one per frame
    latents: np.ndarray | None = None  # (C, 1 + latents, h, w), reference first: a latent cache's window
    mouth: np.ndarray | None = (
        None  # float32 (frames, H, W) in [0, 1]: where the mouth differs from a closed one (synthetic world only)
    )
    closed: np.ndarray | None = (
        None  # uint8 (frames, H, W, 3): the same frames drawn with the mouth at rest (synthetic world only)
    )
    visemes: np.ndarray | None = (
        None  # float32 (frames, 5) in [0, 1]: the world's mouth parameters (MOUTH_KEYS; synthetic world only)
    )
    place: np.ndarray | None = (
        None  # float32 (H, W) in [0, 1]: where the mouth is drawn in the window, open or not (synthetic world only)
    )
    motion: np.ndarray | None = None  # float32 (frames, 24): world/motion_vector.py video_motion (synthetic world only)
    latent_mouth: np.ndarray | None = (
        None  # float32 (latents, h, w) in [0, 1]: the open mouth on the latent grid (a latent cache of the world)
    )
    # video frames of audio before the first frame and after the last in `audio` (a multiple of the
    # VAE's 4): a window's first latent frame hears its past and its last one its look-ahead, as in a stream
    audio_margin: int = 0

    def stream_audio(self) -> np.ndarray:
        """The audio from the window's first frame on (with the trailing margin): what a stream
        that starts at the window hears."""
        return self.audio[self.audio_margin * (16_000 // FPS) :]


def sample_rng(seed: int, step: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(step), int(index), 0x7A1])


# the audio margin training windows are cut with: one latent frame (160 ms) each side covers the
# audio encoder's 80 ms of context and of look-ahead
AUDIO_MARGIN = 4


def cut_audio(audio: np.ndarray, start_frame: int, frames: int, margin: int = 0) -> np.ndarray:
    """The audio of video frames [start_frame - margin, start_frame + frames + margin), silence
    where that runs outside the clip."""
    per = 16_000 // FPS
    a, b = (start_frame - margin) * per, (start_frame + frames + margin) * per
    seg = audio[max(0, a) : max(0, b)]
    return np.pad(seg, (max(0, -a), (b - a) - len(seg) - max(0, -a))).astype(np.float32)


def prompt_at(segments, t: float) -> str:
    for s in segments:
        s = s if isinstance(s, dict) else s.as_dict()
        if s["start"] <= t < s["end"]:
            return s["prompt"]
    return ""
