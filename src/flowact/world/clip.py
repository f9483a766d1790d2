"""One synthetic clip: a character, a voice, a behaviour timeline, and everything that follows.

`make_clip` decides the whole clip from its seed (character, voice, timeline, speech,
motion, visemes) and renders its frames on demand; `write_clip` writes the real files
(H.264 mp4 with the speech muxed, 16 kHz wav, neutral reference png, labels json).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .behaviour import STATES, Motion, Segment, neutral_motion, perform, sample_timeline
from .character import Character, sample_character
from .draw import Renderer
from .speech import SAMPLE_RATE, Phoneme, Speech, Voice, random_sentence, random_voice, synthesize
from .visemes import FPS, MOUTH_KEYS, REST, MouthTrack, mouth_track

LABELS_VERSION = 1
NOISE_FLOOR = 3e-4  # a faint room tone: silence that is still audio
REST_MOUTH = np.array([0.0, REST[1], REST[2], 0.55, 0.0], np.float32)
JOINT_NAMES = ("left_shoulder", "left_elbow", "left_wrist", "right_shoulder", "right_elbow", "right_wrist")


@dataclass
class Utterance:
    start: float  # seconds in the clip (may be negative: the clip starts mid-sentence)
    speech: Speech


@dataclass
class Clip:
    seed: int
    character: Character
    voice: Voice
    width: int
    height: int
    frames: int
    segments: list[Segment]
    utterances: list[Utterance]
    audio: np.ndarray  # (samples,) float32 at 16 kHz
    phonemes: list[Phoneme]  # clip time
    mouth: MouthTrack
    motion: Motion
    renderer: Renderer = field(repr=False)

    @property
    def seconds(self) -> float:
        return self.frames / FPS

    def render(self, index: int) -> np.ndarray:
        """Frame `index`, uint8 (height, width, 3)."""
        return self.renderer.frame(self.motion, self.mouth.stack()[index], index)

    def render_all(self) -> np.ndarray:
        mouth = self.mouth.stack()
        return np.stack([self.renderer.frame(self.motion, mouth[i], i) for i in range(self.frames)])

    def reference(self) -> np.ndarray:
        """The neutral frame: facing the camera, arms down, eyes open, lips at rest."""
        return self.renderer.frame(neutral_motion(self.character), REST_MOUTH, 0)

    def labels(self) -> dict:
        r = lambda a: np.round(np.asarray(a, float), 4).tolist()  # noqa: E731
        joints = self.renderer.to_label_xy(self.motion.joints).reshape(self.frames, 6, 2)
        ref_joints = self.renderer.to_label_xy(neutral_motion(self.character).joints).reshape(6, 2)
        c = self.character
        return {
            "version": LABELS_VERSION,
            "fps": FPS,
            "width": self.width,
            "height": self.height,
            "frames": self.frames,
            "seconds": round(self.seconds, 3),
            "seed": self.seed,
            "character": c.describe(),
            "voice": {
                "language": self.voice.language,
                "name": self.voice.name,
                "rate": self.voice.rate,
                "pitch": self.voice.pitch,
                "range": self.voice.pitch_range,
                # only other engines say so: espeak clips keep their labels byte for byte
                **({"engine": self.voice.engine} if self.voice.engine != "espeak" else {}),
            },
            "utterances": [
                {"start": round(u.start, 3), "end": round(u.start + u.speech.seconds, 3), "text": u.speech.text}
                for u in self.utterances
            ],
            "timeline": [s.as_dict() for s in self.segments],
            "phonemes": [[round(p.start, 3), round(p.end, 3), p.ipa] for p in self.phonemes],
            "states": list(STATES),
            "joint_names": list(JOINT_NAMES),
            "coordinates": "x = 0.5 + (px - width/2) / height, y = py / height",
            "per_frame": {
                "state": self.motion.state.tolist(),
                "state_weight": r(self.motion.state_weight),
                "mouth": {k: r(getattr(self.mouth, k)) for k in MOUTH_KEYS},
                "head": {
                    "yaw": r(self.motion.head[:, 0]),
                    "pitch": r(self.motion.head[:, 1]),
                    "roll": r(self.motion.head[:, 2]),
                },
                "gaze": r(self.motion.gaze),
                "blink": r(self.motion.blink),
                "brow": r(self.motion.brow),
                "smile": r(self.motion.smile),
                "hands": self.motion.hands.astype(int).tolist(),
                "joints": r(joints),
            },
            "reference": {"head": [0.0, 0.0, 0.0], "joints": r(ref_joints), "mouth": r(REST_MOUTH)},
        }


def clip_seed(dataset_seed: int, index: int) -> int:
    """Seed of clip `index` of a dataset: well mixed, so neighbouring datasets share no clips."""
    return int(np.random.SeedSequence([int(dataset_seed), int(index), 0x5EED]).generate_state(1)[0] & 0x7FFFFFFF)


def heldout_character(seed: int) -> bool:
    """Characters whose seed is 7 mod 16 are never used for model training (evaluation only)."""
    return int(seed) % 16 == 7


def split_seed(seed: int, split: str) -> int:
    """The nearest seed at or above `seed` whose character belongs to `split` ("train" | "heldout")."""
    seed = int(seed)
    if split == "heldout":
        return seed + (7 - seed % 16) % 16
    return seed + 1 if heldout_character(seed) else seed


def make_clip(
    seed: int,
    seconds: float,
    width: int,
    height: int,
    *,
    character_seed: int | None = None,
    language: str | None = None,
    first_state: str | None = None,
    lead: float | None = None,
    split: str | None = None,
    engine: str = "espeak",
) -> Clip:
    """Everything about a clip, decided by `seed` (the character by `character_seed`, default: seed).
    `split` "train" / "heldout" restricts the voice to training / held-out voices (the caller
    picks the character seed with `split_seed`). `engine` "festival" speaks with a Festival
    voice instead of espeak-ng: held out as a whole, so only with `split` "heldout"."""
    rng = np.random.default_rng([int(seed), 0xC11])
    character = sample_character(seed if character_seed is None else character_seed)
    voice = random_voice(rng, language, split, engine)
    frames = max(1, int(round(seconds * FPS)))
    seconds = frames / FPS
    lead = float(rng.uniform(0.2, 1.2)) if lead is None else lead  # the clip starts mid-behaviour
    speeches: list[Speech] = []

    def next_speech() -> float:
        sp = synthesize(random_sentence(rng, voice.language), voice)
        speeches.append(sp)
        return sp.seconds

    if first_state is None:
        first_state = str(rng.choice([s for s in STATES if s != "idle"]))
    segs = sample_timeline(rng, seconds + lead, next_speech, first=first_state)
    segs = [Segment(s.start - lead, s.end - lead, s.state, s.prompt, s.side) for s in segs if s.end - lead > 0]
    audio = (rng.standard_normal(int(round(seconds * SAMPLE_RATE))) * NOISE_FLOOR).astype(np.float32)
    phonemes: list[Phoneme] = []
    utts = place_utterances(segs, speeches)
    for u in utts:
        a0 = int(round(u.start * SAMPLE_RATE))
        src = u.speech.samples
        lo, hi = max(0, -a0), min(len(src), len(audio) - a0)
        if hi > lo:
            audio[a0 + lo : a0 + hi] += src[lo:hi]
        for p in u.speech.phonemes:
            s, e = p.start + u.start, p.end + u.start
            if e > 0 and s < seconds:
                phonemes.append(Phoneme(max(s, 0.0), min(e, seconds), p.ipa))
    mouth = mouth_track(phonemes, frames)
    activity = np.convolve(mouth.open, np.ones(9) / 9, mode="same").clip(0, 1) * 2
    motion = perform(character, segs, frames, rng, speaking_activity=np.clip(activity, 0, 1))
    return Clip(
        int(seed),
        character,
        voice,
        width,
        height,
        frames,
        segs,
        utts,
        np.clip(audio, -1, 1),
        phonemes,
        mouth,
        motion,
        Renderer(character, width, height),
    )


def place_utterances(segs: list[Segment], speeches: list[Speech]) -> list[Utterance]:
    """Place the utterances in the speaking segments, in order (the timeline consumed them in order)."""
    out = []
    # speeches were synthesised for every speaking segment of the un-trimmed timeline; the
    # trimmed-away leading segments (ending before 0) consumed the first ones.
    speaking = [s for s in segs if s.state == "speaking"]
    skip = len(speeches) - len(speaking)
    for seg, sp in zip(speaking, speeches[skip:]):
        out.append(Utterance(seg.start + 0.1, sp))
    return out


def write_clip(clip: Clip, out_dir: str | Path, name: str) -> dict:
    """Write <name>.mp4, .wav, .ref.png, .json into out_dir; returns sizes and timings."""
    from PIL import Image

    from ..media.audio import write_wav
    from ..media.ffmpeg import VideoWriter

    out_dir = Path(out_dir)
    wav = out_dir / f"{name}.wav"
    write_wav(wav, clip.audio, SAMPLE_RATE)
    render_s = 0.0
    with VideoWriter(out_dir / f"{name}.mp4", clip.width, clip.height, FPS, audio=wav) as writer:
        mouth = clip.mouth.stack()
        for i in range(clip.frames):
            t0 = time.perf_counter()
            frame = clip.renderer.frame(clip.motion, mouth[i], i)
            render_s += time.perf_counter() - t0
            writer.write(frame)
    Image.fromarray(clip.reference()).save(out_dir / f"{name}.ref.png")
    (out_dir / f"{name}.json").write_text(json.dumps(clip.labels(), separators=(",", ":")))
    files = [out_dir / f"{name}{ext}" for ext in (".mp4", ".wav", ".ref.png", ".json")]
    return {
        "name": name,
        "seed": clip.seed,
        "frames": clip.frames,
        "render_seconds": render_s,
        "bytes": {f.name: f.stat().st_size for f in files},
    }
