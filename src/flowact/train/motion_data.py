"""The motion engine's training data: a cache of world clips (audio, motion labels, per-frame
state and prompt), built once; audio augmentation so human voices work (speed/pitch by resampling
with the labels warped alike, rooms, band limits, noise, a telephone codec, gain); batches of stream windows."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import FlowactError

from ..model.audio import HOP, N_FFT
from ..model.motion import MEL_PER_FRAME, MotionDiT, frame_windows, mel_frames
from ..model.text import MAX_WORDS, tokenize
from ..stream.motion import SAMPLES_PER_FRAME


# -- the clip cache ------------------------------------------------------------------------------
def build_cache(path: Path, clips: int, seconds: float = 8.0, seed: int = 0, on_clip=None) -> Path:
    """World clips of training characters and voices -> one npz: audio int16 (n, samples), motion
    (n, frames, 24: the 16 and the arms, ARM_KEYS), reference (n, 24), state (n, frames), prompt (n,
    frames) indices into `prompts`."""
    from ..world.clip import clip_seed, make_clip, split_seed
    from ..world.motion_vector import clip_arms, clip_motion, reference_motion, rest_arms

    audio, motion, ref, state, prompt, prompts = [], [], [], [], [], []
    for i in range(clips):
        c = make_clip(split_seed(clip_seed(seed, i), "train"), seconds, 128, 128, split="train")
        audio.append(np.round(np.clip(c.audio, -1, 1) * 32767).astype(np.int16))
        motion.append(np.concatenate([clip_motion(c), clip_arms(c)], 1))
        ref.append(np.concatenate([reference_motion(c), rest_arms(c.character)]))
        state.append(c.motion.state.astype(np.int8))
        t = (np.arange(c.frames) + 0.5) / 25.0
        ids = np.zeros(c.frames, np.int16)
        for s in c.segments:
            if s.prompt not in prompts:
                prompts.append(s.prompt)
            ids[(t >= s.start) & (t < s.end)] = prompts.index(s.prompt)
        prompt.append(ids)
        if on_clip:
            on_clip(i)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        audio=np.stack(audio),
        motion=np.stack(motion),
        reference=np.stack(ref),
        state=np.stack(state),
        prompt=np.stack(prompt),
        prompts=np.array(json.dumps(prompts)),
    )
    return path


class ClipCache:
    def __init__(self, path: Path):
        z = np.load(path)
        self.audio = z["audio"]  # int16: scaled per sample
        self.motion, self.reference = z["motion"], z["reference"]
        self.state, self.prompt = z["state"].astype(np.int64), z["prompt"].astype(np.int64)
        self.prompts = json.loads(str(z["prompts"]))
        self.frames = self.motion.shape[1]

    def statistics(self, dim: int = 16) -> tuple[np.ndarray, np.ndarray]:
        """(mean of the motion, scale of motion - reference per number), float32 (dim,): the first `dim`."""
        if self.motion.shape[-1] < dim:
            have = self.motion.shape[-1]
            raise FlowactError(f"the motion cache holds {have} numbers a frame, the model makes {dim}: build it again")
        m, r = self.motion[..., :dim], self.reference[:, :dim]
        return m.reshape(-1, dim).mean(0), np.maximum((m - r[:, None]).reshape(-1, dim).std(0), 0.05)


# -- audio augmentation ------------------------------------------------------------------------
# The share of windows whose audio is augmented (speed/pitch aside). Half: the ear then also learns the clean
# detail that augmentation hides (on held-out clips, an ear stage of 1500 steps: closed r 0.63 -> 0.73, teeth
# 0.25 -> 0.81 without augmentation), while the other half keeps rooms, lines and gains (docs/motion.md).
P_AUGMENT = 0.5


def augment(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """What lies between a voice and the model in other recordings (speed/pitch: `Batch`): a room's
    reverberation, a microphone's band limits, noise, a telephone line's codec, the loudness."""
    x = audio
    if rng.random() < 0.3:
        x = room(x, rng)
    if rng.random() < 0.5:  # band limits: phone-like to full band
        x = band(x, rng.uniform(40, 300), rng.uniform(2500, 8000))
    level = np.sqrt(np.mean(x**2) + 1e-10)
    if rng.random() < 0.5:  # noise at 0-40 dB below speech level
        x = x + rng.standard_normal(len(x)).astype(np.float32) * level * 10 ** (-rng.uniform(0, 40) / 20)
    if rng.random() < 0.2:
        x = telephone(x)
    gain = 10 ** (rng.uniform(-30, 8) / 20)  # quiet to loud recordings
    return np.clip(x * gain, -1, 1).astype(np.float32)


def band(x: np.ndarray, lo: float, hi: float, order: int = 4) -> np.ndarray:
    """x (16 kHz) through a high-pass at `lo` and a low-pass at `hi` Hz (smooth, zero-phase)."""
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(len(x), 1 / 16_000)
    spec *= 1 / (1 + (lo / np.maximum(f, 1)) ** order) / (1 + (f / hi) ** (2 * order))
    return np.fft.irfft(spec, len(x)).astype(np.float32)


def room(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """x heard in a room: convolved with an impulse response of exponentially decaying noise
    (reverberation time RT60 0.15-0.8 s: -60 dB after RT60), the reverberant sound 10 dB below to
    3 dB above the direct one; the result keeps x's level. The tail smears syllables into the
    pauses after them, as in a real room."""
    rt60 = rng.uniform(0.15, 0.8)
    n = max(2, min(len(x), int(rt60 * 16_000)))
    t = np.arange(n) / 16_000
    ir = rng.standard_normal(n) * 10 ** (-3 * t / rt60)
    ir[0] = 0.0  # the direct path is added below
    size = 1 << int(np.ceil(np.log2(len(x) + n)))
    wet = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(ir, size), size)[: len(x)]
    level = np.sqrt(np.mean(x**2) + 1e-10)
    wet *= level / np.sqrt(np.mean(wet**2) + 1e-10) * 10 ** (rng.uniform(-10, 3) / 20)
    y = x + wet
    return (y * level / np.sqrt(np.mean(y**2) + 1e-10)).astype(np.float32)


def mu_law(x: np.ndarray, bits: int = 8, mu: float = 255.0) -> np.ndarray:
    """x in [-1, 1] through mu-law companding quantised to 2**bits levels and back (G.711's law)."""
    y = np.sign(x) * np.log1p(mu * np.abs(np.clip(x, -1, 1))) / np.log1p(mu)
    half = 2 ** (bits - 1)
    q = np.clip(np.round(y * half), -half, half - 1) / half
    return (np.sign(q) * np.expm1(np.abs(q) * np.log1p(mu)) / mu).astype(np.float32)


def telephone(x: np.ndarray) -> np.ndarray:
    """x over a G.711 telephone line: 300-3400 Hz, mu-law 8-bit at a level near the codec's full scale."""
    x = band(x, 300, 3400, order=6)
    peak = float(np.abs(x).max()) + 1e-10
    return band(mu_law(x / peak * 0.9) * peak / 0.9, 300, 3400, order=6)


@dataclass
class Batch:
    """A batch of stream windows: chunks 0..k of each, as (batch, k + 1, ...) tensors."""

    windows: torch.Tensor  # (b, k+1, C, window, bins) mel windows per frame
    motion: torch.Tensor  # (b, k+1, C, 16) labels
    reference: torch.Tensor  # (b, 16)
    state: torch.Tensor  # (b, k+1) 0 = none
    words: torch.Tensor  # (b, k+1, MAX_WORDS)
    no_audio: torch.Tensor  # (b, k+1) bool: audio dropped (guidance)

    @property
    def k(self) -> int:
        """The last chunk's index: the one a stage learns."""
        return self.motion.shape[1] - 1


def make_batch(cache: ClipCache, model: MotionDiT, rngs: list[np.random.Generator], k: int, drop: bool = True) -> Batch:
    """Chunks 0..k of one stream window per generator: the clip, the place, speed and pitch, the
    audio's augmentation and (with `drop`, for guidance) the dropped states, prompts and audio of
    window i are drawn from rngs[i] alone, so a window is the same whichever batch holds it."""
    cfg = model.cfg
    c = cfg.chunk_frames
    n = c * (k + 1)
    rows = MEL_PER_FRAME * n + cfg.context + cfg.lookahead
    span = (rows - 1) * HOP + N_FFT
    wins, mot, refs, states, words, no_audio = [], [], [], [], [], []
    for rng in rngs:
        i = int(rng.integers(0, len(cache.audio)))
        r = rng.uniform(0.85, 1.15) if rng.random() < 0.6 else 1.0  # speed and pitch by resampling
        o = rng.uniform(0, cache.frames - 1 - n * r)
        s0 = o * SAMPLES_PER_FRAME + ((-cfg.context * HOP) - N_FFT // 2) * r
        src = s0 + np.arange(span) * r
        a = np.interp(src, np.arange(cache.audio.shape[1]), cache.audio[i] / 32767, left=0.0, right=0.0)
        a = a.astype(np.float32)
        if rng.random() < P_AUGMENT:
            a = augment(a, rng)
        with torch.no_grad():
            mel = mel_frames(model.mel, torch.from_numpy(a))
        wins.append(frame_windows(mel, n, cfg.window))
        f = o + np.arange(n) * r
        fi = np.arange(cache.frames)
        mot.append(np.stack([np.interp(f, fi, cache.motion[i, :, d]) for d in range(cfg.dim)], 1))
        refs.append(cache.reference[i, : cfg.dim])
        near = np.clip(np.round(f).astype(int), 0, cache.frames - 1).reshape(k + 1, c)
        st = [np.bincount(cache.state[i, row], minlength=len(cfg.states)).argmax() + 1 for row in near]
        pr = [cache.prompts[cache.prompt[i, row[c // 2]]] for row in near]
        if drop:
            st = [0 if rng.random() < 0.3 else s for s in st]
            pr = ["" if rng.random() < 0.3 else p for p in pr]
        ids = np.zeros((k + 1, MAX_WORDS), np.int64)
        for j, p in enumerate(pr):
            t = tokenize(p, cfg.vocab)
            ids[j, : len(t)] = t
        states.append(st)
        words.append(ids)
        no_audio.append(rng.random(k + 1) < (0.1 if drop else 0.0))
    b = len(rngs)
    return Batch(
        torch.stack(wins).view(b, k + 1, c, cfg.window, -1),
        torch.from_numpy(np.stack(mot).astype(np.float32)).view(b, k + 1, c, cfg.dim),
        torch.from_numpy(np.stack(refs).astype(np.float32)),
        torch.tensor(np.array(states), dtype=torch.long),
        torch.from_numpy(np.stack(words)),
        torch.from_numpy(np.stack(no_audio)),
    )
