"""Training clips: (reference, frames, audio, per-frame prompts), from the synthetic world on
the fly, a `flowact synth` folder, or a folder of real mp4 files with audio (no labels).

Every sample is a pure function of (seed, step, index in batch): resuming at step s
sees exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import FlowactError
from .mouth_masks import closed_frames, mouth_masks
from .sample import AUDIO_MARGIN, FPS, Sample, cut_audio, prompt_at, sample_rng


def _window(total_frames: int, frames: int, rng: np.random.Generator) -> int:
    if total_frames < frames:
        raise FlowactError(f"clip has {total_frames} frames, training needs {frames}")
    return int(rng.integers(0, total_frames - frames + 1))


class SynthSource:
    """Clips made on demand by the synthetic world (no disk)."""

    def __init__(
        self,
        seed: int,
        width: int,
        height: int,
        seconds: float = 4.0,
        mouth: bool = False,
        speaking: float = 0.0,
        video: bool = True,
    ):
        self.seed, self.width, self.height, self.seconds = seed, width, height, seconds
        self.mouth = mouth  # also return mouth masks (renders every frame twice)
        self.video = video  # False: audio, prompts and visemes only, no frames drawn (about 40x faster)
        # this fraction of the samples is a window of speech (else: anywhere in the clip, where
        # most windows are idle, listening or thinking and the mouth rests)
        self.speaking = speaking

    def sample(self, step: int, index: int, frames: int) -> Sample:
        from ..world.clip import make_clip, split_seed
        from ..world.motion_vector import video_motion

        rng = sample_rng(self.seed, step, index)
        seed = split_seed(int(rng.integers(0, 2**31 - 17)), "train")  # never a held-out character or voice
        seconds = max(self.seconds, frames / FPS + 0.2)
        if self.speaking and rng.random() < self.speaking:
            clip = make_clip(seed, seconds, self.width, self.height, split="train", first_state="speaking", lead=0.0)
            u = clip.utterances[0]  # the clip opens with it: a window inside it
            last = min(clip.frames, int((u.start + u.speech.seconds) * FPS)) - frames
            start = int(rng.integers(0, max(0, last) + 1))
        else:
            clip = make_clip(seed, seconds, self.width, self.height, split="train")
            start = _window(clip.frames, frames, rng)
        prompts = [prompt_at(clip.segments, (start + i) / FPS) for i in range(frames)]
        visemes = (
            clip.mouth.stack()[start : start + frames].astype(np.float32) if self.mouth or not self.video else None
        )
        audio = cut_audio(clip.audio, start, frames, AUDIO_MARGIN)
        motion = video_motion(clip)[start : start + frames]
        if not self.video:
            return Sample(
                clip.reference(), None, audio, prompts, visemes=visemes, motion=motion, audio_margin=AUDIO_MARGIN
            )
        video = np.stack([clip.render(i) for i in range(start, start + frames)])
        closed = closed_frames(clip, start, frames) if self.mouth else None
        mouth = mouth_masks(clip, start, video, closed) if self.mouth else None
        place = mouth_place(clip, start, frames, closed, mouth) if self.mouth else None
        return Sample(
            clip.reference(),
            video,
            audio,
            prompts,
            mouth=mouth,
            closed=closed,
            visemes=visemes,
            motion=motion,
            place=place,
            audio_margin=AUDIO_MARGIN,
        )


def heldout_speech(
    rng: np.random.Generator, frames: int, width: int, height: int, seconds: float, engine: str = "espeak"
):
    """(clip, start): a held-out character and voice that open the clip speaking, and a window
    of `frames` inside that first utterance. Draws clips from `rng` until one speaks long enough.
    `engine` "festival": Festival speaks (world/festival.py)."""
    from ..world.clip import make_clip, split_seed

    while True:
        clip = make_clip(
            split_seed(int(rng.integers(0, 2**31 - 17)), "heldout"),
            seconds,
            width,
            height,
            split="heldout",
            first_state="speaking",
            lead=0.0,
            engine=engine,
        )
        u = clip.utterances[0]
        last = min(clip.frames, int((u.start + u.speech.seconds) * FPS)) - frames
        if last >= 0:
            return clip, int(rng.integers(0, last + 1))


WIDE_OPEN = np.array([1.0, 0.6, 0.3, 0.0, 0.6], np.float32)  # MOUTH_KEYS: open, width, round, closed, teeth


def mouth_place(clip, start: int, count: int, closed: np.ndarray, mouth: np.ndarray) -> np.ndarray:
    """(H, W) float32: where the window's mouth is, open or not: the pixels where its middle frame
    drawn with the mouth wide open differs from it drawn at rest, and every pixel where the
    mouth opens in the window. (The head moves a pixel or two in a window of a few frames.)"""
    mid = count // 2
    wide = clip.renderer.frame(clip.motion, WIDE_OPEN, start + mid)
    diff = np.abs(wide.astype(np.int16) - closed[mid].astype(np.int16)).max(axis=-1) > 12
    return np.maximum(diff.astype(np.float32), mouth.max(axis=0))


class FolderSource:
    """A `flowact synth` folder (clip_*.json present) or any folder of mp4 files with audio.
    Real videos have no reference picture: a frame outside the training window stands in."""

    def __init__(self, root: str | Path, width: int, height: int, seed: int = 0):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FlowactError("training data folder not found", path=self.root)
        self.width, self.height, self.seed = width, height, seed
        self.synth = any(self.root.glob("clip_*.json"))
        self.videos = sorted(self.root.glob("clip_*.mp4" if self.synth else "*.mp4"))
        if not self.videos:
            raise FlowactError("no .mp4 clips in the training data folder", path=self.root)
        self._cache: dict[Path, tuple] = {}

    def _load(self, video: Path):
        if video not in self._cache:
            from ..media.audio import load_audio
            from ..media.probe import read_frames

            frames = _fit(read_frames(video), self.width, self.height)
            audio = load_audio(video if not self.synth else video.with_suffix(".wav"), allow_silent=True).samples
            prompts_src = None
            if self.synth:
                import json

                prompts_src = json.loads(video.with_suffix(".json").read_text())["timeline"]
            if len(self._cache) > 64:  # bounded memory: forget the oldest clip
                self._cache.pop(next(iter(self._cache)))
            self._cache[video] = (frames, audio, prompts_src)
        return self._cache[video]

    def sample(self, step: int, index: int, frames: int) -> Sample:
        rng = sample_rng(self.seed, step, index)
        video = self.videos[int(rng.integers(0, len(self.videos)))]
        all_frames, audio, timeline = self._load(video)
        start = _window(len(all_frames), frames, rng)
        if self.synth:
            from PIL import Image

            ref = _fit(
                np.asarray(Image.open(video.with_name(video.stem + ".ref.png")).convert("RGB"))[None],
                self.width,
                self.height,
            )[0]
            prompts = [prompt_at(timeline, (start + i) / FPS) for i in range(frames)]
        else:
            outside = [i for i in (0, len(all_frames) - 1) if not start <= i < start + frames]
            ref = all_frames[outside[0] if outside else 0]
            prompts = [""] * frames
        audio = cut_audio(audio, start, frames, AUDIO_MARGIN)
        return Sample(ref, all_frames[start : start + frames], audio, prompts, audio_margin=AUDIO_MARGIN)


def _fit(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    if frames.shape[1:3] == (height, width):
        return frames
    from PIL import Image

    out = []
    for f in frames:
        im = Image.fromarray(f)
        s = max(width / im.width, height / im.height)
        im = im.resize((max(width, round(im.width * s)), max(height, round(im.height * s))), Image.Resampling.BILINEAR)
        left, top = (im.width - width) // 2, (im.height - height) // 3
        out.append(np.asarray(im.crop((left, top, left + width, top + height))))
    return np.stack(out)


def make_source(
    data: str, width: int, height: int, seed: int, mouth: bool = False, speaking: float = 0.0, video: bool = True
):
    """`synth` or `synth:SEED` for the on-the-fly world, a latent cache folder (`flowact train
    --stage cache`), else a folder of clips. `mouth`: the world also returns mouth masks;
    `speaking`: the world's fraction of speech windows; `video` False: the world draws no frames
    (a stage that needs only audio and the world's labels)."""
    if not 0.0 <= speaking <= 1.0:
        raise FlowactError(f"--speaking is a fraction of the samples, 0 to 1 (got {speaking:g})")
    if data == "synth" or data.startswith("synth:"):
        return SynthSource(
            int(data.split(":", 1)[1]) if ":" in data else seed,
            width,
            height,
            mouth=mouth,
            speaking=speaking,
            video=video,
        )
    if speaking:
        raise FlowactError("--speaking picks speech windows in the synthetic world: use --data synth")
    if (Path(data) / "cache.json").exists():
        from .cache import LatentSource  # lazy: it needs torch and the weights module

        return LatentSource(data, seed)
    return FolderSource(data, width, height, seed)
