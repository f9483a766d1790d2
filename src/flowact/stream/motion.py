"""The motion engine's stream: per-frame motion vectors, 8 frames (0.32 s) per chunk, from speech
as it arrives and a behaviour prompt/state that may change between chunks.

    engine = MotionEngine.load()                      # bundled assets/motion.safetensors
    stream = MotionStream(engine, reference)          # reference: the rest pose (16,)
    a, b = stream.audio_span(i)                       # the 16 kHz samples chunk i needs
    motion = stream.chunk(i, audio[a:b], prompt="nodding yes")   # (8, 16) float32

Per chunk: the chunk's condition tokens (audio, behaviour) through the blocks once, 3 Euler steps of
the motion MMDiT over [bank | conditions | chunk], then one memory pass that writes the chunk's
keys/values into the bank. The bank is the video model's (stream/bank.py `MemoryBank`), one motion
token a slot:

    [ reference (1) | long-term (L) | short-term (C) | current (C) ]

reference: the rest pose, written once; long-term: one of every `stride` frames leaving
short-term memory, the newest L (`MotionLayout.memory_frames` is the policy, shared with
training); short-term: the previous chunk. Keys are stored rotated at their slot's fixed position
(a frame that moves slot is re-rotated by the delta), so every chunk costs the same forever.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from .. import weights as W
from ..errors import FlowactError
from ..model.audio import HOP, N_FFT
from ..model.block import BankAttention, BankView
from ..model.motion import MEL_PER_FRAME, MOTION_DIM, MotionConfig, MotionDiT, empty_view, frame_windows, mel_frames
from ..world.motion_vector import BODY, HIGH, LOW, MOUTH, VIDEO_HIGH, VIDEO_LOW  # noqa: F401 (LOW, HIGH: re-exported)
from .bank import MemoryBank
from .sampler import EulerSampler, shifted_timesteps

STEPS = 3
SHIFT = 2.0
# The mouth numbers start from half the noise: on 12 held-out clips the mouth follows the speech
# closer (r at lag 0, noise 1.0 -> 0.5: open 0.86 -> 0.88, round 0.55 -> 0.62, closed 0.41 -> 0.52,
# width 0.33 -> 0.34) while head and gaze move as much (their noise is untouched); teeth, which
# followed only the noise (r 0.03), stop moving. docs/motion.md. Since 2026-12-06 only mouth_open is sampled:
# the other four are the ear's reading (MotionConfig.ear_mouth).
MOUTH_NOISE = 0.5
SAMPLES_PER_FRAME = 640  # 16 kHz / 25 fps


def bundled_path() -> Path:
    return Path(str(resources.files("flowact.assets").joinpath("motion.safetensors")))


class MotionEngine:
    """A motion MMDiT ready to stream: the model in eval mode (float32) and its sampler's steps."""

    def __init__(
        self,
        model: MotionDiT,
        steps: int = STEPS,
        shift: float = SHIFT,
        memory_t: float = 0.0,
        mouth_noise: float = MOUTH_NOISE,
    ):
        self.model = model
        self.cfg = model.cfg
        self.timesteps = tuple(shifted_timesteps(steps, shift))
        self.memory_t = memory_t  # noise level of memory (damps error accumulation when > 0)
        self.mouth_noise = mouth_noise  # scale of the starting noise of the mouth numbers (see MOUTH_NOISE)

    @classmethod
    def load(cls, path: str | Path | None = None, device: str = "cpu") -> "MotionEngine":
        """From a motion weights file (None: the bundled one); the file describes its architecture."""
        path = Path(path) if path is not None else bundled_path()
        if not path.is_file():
            raise FlowactError(f"no motion weights at {path}")
        header, state = W.read(path, "motion")
        if not header.config:
            raise FlowactError(f"{path}: no motion architecture in the file's header (not saved by flowact)")
        model = MotionDiT(MotionConfig.from_json(json.dumps(header.config)))
        model.load_state_dict({k: v.float() for k, v in state.items()})
        model = model.to(device).eval().requires_grad_(False)
        return cls(model, int(header.extra.get("steps", STEPS)), float(header.extra.get("shift", SHIFT)))


def save_motion(model: MotionDiT, path: str | Path, steps: int = STEPS, shift: float = SHIFT, dtype=torch.float16):
    """Weights (`dtype`, statistics in float32) in the one weights format (weights.py), its config the header's."""
    state = {
        k: v.detach().cpu().to(torch.float32 if k in ("mean", "scale") else dtype)
        for k, v in model.state_dict().items()
    }
    return W.write(path, state, "motion", json.loads(model.cfg.to_json()), {"steps": steps, "shift": shift})


class ArmFilter:
    """A one-euro filter (Casiez et al. 2012) over the engine's arm numbers, frame by frame, causal: the
    engine samples each frame's arms with their own noise, and cut arms drawn where it puts them shake
    (on 6 held-out clips the arms' second difference was 6-40x the world's, with steps at every chunk
    join). The cut-off rises with the speed, so a wave keeps its swing while a resting arm stops shaking:
    0.5 Hz at rest, + 0.5 Hz per unit (of reach) a second. On the same clips: the arms' correlation with the
    world's 0.57 -> 0.62, their roughness / 7 (docs/motion-video.md). The arms engine's body numbers go through
    one too (0.5 Hz, no speed term)."""

    MIN_CUTOFF = 0.5  # Hz
    BETA = 0.5  # Hz per (reach / s)
    SPEED_CUTOFF = 1.0  # Hz: the speed's own smoothing

    def __init__(self, dim: int, fps: float = 25.0, min_cutoff: float = MIN_CUTOFF, beta: float = BETA):
        self.dim, self.dt = dim, 1.0 / fps
        self.min_cutoff, self.beta = min_cutoff, beta
        self.y: np.ndarray | None = None  # the last output frame
        self.speed = np.zeros(dim, np.float32)

    @staticmethod
    def _alpha(cutoff, dt: float):
        return 1.0 / (1.0 + 1.0 / (2 * np.pi * cutoff * dt))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = np.empty_like(x)
        for i, frame in enumerate(x):
            if self.y is None:
                self.y = frame.copy()
            else:
                self.speed = self.speed + self._alpha(self.SPEED_CUTOFF, self.dt) * (
                    (frame - self.y) / self.dt - self.speed
                )
                a = self._alpha(self.min_cutoff + self.beta * np.abs(self.speed), self.dt)
                self.y = self.y + a * (frame - self.y)
            out[i] = self.y
        return out

    def state(self):
        return None if self.y is None else self.y.copy(), self.speed.copy()

    def set_state(self, state) -> None:
        y, speed = state
        self.y, self.speed = None if y is None else y.copy(), speed.copy()


class MotionStream:
    """One character's motion, chunk by chunk. Chunks must come in order 0, 1, 2, ..."""

    def __init__(self, engine: MotionEngine, reference: np.ndarray | None = None, seed: int = 0):
        """reference: the rest pose (16,) (None: the world's neutral one); (batch, 16) streams a batch
        at once through `denoise` (training's rollouts)."""
        self.engine = engine
        model = self.model = engine.model
        cfg = self.cfg = model.cfg
        self.layout = model.layout
        self.chunk_frames = cfg.chunk_frames
        dev = model.out.weight.device
        if reference is None:
            from ..world.motion_vector import neutral_vector

            reference = neutral_vector()
        reference = np.asarray(reference, np.float32)
        if reference.shape[-1] not in (MOTION_DIM, cfg.dim):
            raise FlowactError(f"reference motion must have {MOTION_DIM} numbers, got {reference.shape[-1]}")
        if reference.shape[-1] < cfg.dim:  # an engine that makes arms: they rest
            from ..world.motion_vector import REST_ARMS

            rest = np.broadcast_to(REST_ARMS[: cfg.arms], (*reference.shape[:-1], cfg.arms))
            reference = np.concatenate([reference, rest], -1)
        self.reference = torch.as_tensor(reference).reshape(-1, cfg.dim).to(dev)
        self.low, self.high = VIDEO_LOW[: cfg.dim], VIDEO_HIGH[: cfg.dim]
        b = self.batch = self.reference.shape[0]
        self.generator = torch.Generator(device=dev).manual_seed(int(seed))
        self.bank = MemoryBank(self.layout, cfg.depth, cfg.heads, cfg.width // cfg.heads, b, dev)
        self.cos, self.sin = self.layout.tables(self.layout.chunk_times().to(dev))
        self.sampler = EulerSampler(engine.timesteps, 1, dev)
        c = self.chunk_frames
        # positions: the chunk's motion tokens, then its condition tokens (audio, behaviour)
        self.cos_m, self.sin_m = self.cos[:c], self.sin[:c]
        self.cos_c, self.sin_c = self.cos[c:], self.sin[c:]
        with torch.no_grad():
            # static per stream: the modulation of every sampler step and of the memory pass
            self._mods = {}
            for t in self.sampler.t[: self.sampler.nfe]:
                ada, fin = model.modulation(t)
                self._mods[float(t)] = ({"motion": model.prepare(ada, "motion")}, fin)
            ada = model.modulation(torch.full((1,), engine.memory_t, device=dev))[0]
            self._memory_mods = {"motion": model.prepare(ada, "motion")}
            clean = model.modulation(torch.zeros(1, device=dev))[0]
            self._clean_mods = {s: model.prepare(clean, s) for s in ("audio", "behaviour")}
            # the reference pass: the rest pose's token alone -> the bank's reference slot
            ref_tokens = [("motion", model.reference_token(self.reference))]
            bank, nothing = self.bank.view(), empty_view(ref_tokens[0][1], cfg)
            model.write_pass(ref_tokens, self._memory_mods, self.cos[:1], self.sin[:1], nothing, bank,
                             self.bank.reference_write())  # fmt: skip
            self.bank.mark_reference()
        self._behaviour: dict[tuple, torch.Tensor] = {}
        self._ear_stats = None  # the ear's running speaker mean (model/motion.py MotionEar)
        self.ear_mouth = torch.tensor(cfg.ear_mouth, dtype=torch.long, device=dev) if cfg.ear_mouth else None
        self.next_index = 0
        self.arm_filter = ArmFilter(cfg.arms) if cfg.arms else None
        # the body's sway, breathing and shrug move the shoulders, and with them the cut arms, by a character
        # unit (~150 px) per unit: the engine's frame-to-frame noise in them shook the arms by 0.6-0.8 px a frame
        # (the world's 0.03); filtered alike, more slowly (the world's body moves slowly)
        self.body_filter = ArmFilter(3, min_cutoff=0.5, beta=0.0) if cfg.arms else None

    def snapshot(self) -> tuple:
        """The stream's state before its next chunk (bank, noise generator, the ear's running statistics,
        the arms' filter, chunk index), copied; `restore` goes back to it, so that chunk can be made again
        with other audio."""
        arms = None if self.arm_filter is None else (self.arm_filter.state(), self.body_filter.state())
        return self.bank.snapshot(), self.generator.get_state(), _copied(self._ear_stats), arms, self.next_index

    def restore(self, state: tuple) -> None:
        bank, rng, ear, arms, index = state
        self.bank.restore(bank)
        self.generator.set_state(rng)
        self._ear_stats = _copied(ear)
        if self.arm_filter is not None:
            self.arm_filter.set_state(arms[0])
            self.body_filter.set_state(arms[1])
        self.next_index = index

    def audio_span(self, index: int) -> tuple[int, int]:
        """(first, end) 16 kHz samples chunk `index` needs; may lie before 0 or past the audio's end
        (the caller zero-pads)."""
        cfg = self.cfg
        first_mel = index * self.chunk_frames * MEL_PER_FRAME - cfg.context
        rows = (self.chunk_frames - 1) * MEL_PER_FRAME + cfg.window
        first = first_mel * HOP - N_FFT // 2
        return first, first + (rows - 1) * HOP + N_FFT

    def _behaviour_token(self, prompt: str | None, state: str | None) -> torch.Tensor:
        key = (prompt or "", state or "")
        tok = self._behaviour.get(key)
        if tok is None:
            if state and state not in self.cfg.states:
                raise FlowactError(f"unknown state '{state}' (states: {', '.join(self.cfg.states)})")
            dev = self.reference.device
            s = torch.tensor([self.model.state_id(state)], device=dev)
            tok = self._behaviour[key] = self.model.behaviour(s, self.model.word_ids(prompt)[None].to(dev))[:, None]
        return tok

    def chunk(self, index: int, audio: np.ndarray, prompt: str | None = None, state: str | None = None) -> np.ndarray:
        """Motion of frames [8 index, 8 index + 8): (8, 16) float32 in the contract's ranges (8, 24 for an
        engine that makes arms: the arm numbers after the 16, -1..1).
        `audio`: exactly the samples of `audio_span(index)` (zero-padded outside the recording)."""
        if index != self.next_index:
            raise FlowactError(f"motion chunks come in order: expected chunk {self.next_index}, got {index}")
        a, b = self.audio_span(index)
        if len(audio) != b - a:
            raise FlowactError(f"chunk {index} needs {b - a} audio samples (audio_span), got {len(audio)}")
        with torch.no_grad():
            audio = torch.from_numpy(np.asarray(audio, np.float32)).to(self.reference.device)
            feat, _, self._ear_stats = self.model.audio_features(
                frame_windows(mel_frames(self.model.mel, audio), self.chunk_frames, self.cfg.window)[None],
                self._ear_stats,
                with_stats=True,
            )
            noise = torch.randn((1, self.chunk_frames, self.cfg.dim), generator=self.generator, device=feat.device)
            noise[..., MOUTH] *= self.engine.mouth_noise
            x = self.denoise(feat, self._behaviour_token(prompt, state), noise)
            motion = self.model.denormalise(x, self.reference)[0].cpu().numpy()
        motion = np.clip(motion, self.low, self.high)
        if self.arm_filter is not None:
            motion[:, MOTION_DIM:] = self.arm_filter(motion[:, MOTION_DIM:])
            motion[:, BODY] = self.body_filter(motion[:, BODY])
        return motion

    def denoise(self, feat: torch.Tensor, behaviour: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The hot path, pure tensors: the next chunk's normalised motion (batch, C, 16) from its audio
        features (batch, C, feat), behaviour token (batch, 1, width) and noise (batch, C, 16); then
        its memory pass and commit to the bank."""
        model = self.model
        cond = model.condition_kv(feat, behaviour, self._clean_mods, self.cos_c, self.sin_c)  # once per chunk
        bank = self.bank.view()
        a = bank.attend
        # what the chunk's passes read: [the bank's readable slots | the chunk's conditions]
        # a full bank (known on the host) needs no mask: attention is then one plain product
        valid = (
            None if self.bank.full else torch.cat([bank.valid[:, :a], bank.valid.new_ones(self.batch, cond.attend)], 1)
        )
        memory = BankView(torch.cat([bank.k[:, :, :, :a], cond.k], 3), torch.cat([bank.v[:, :, :, :a], cond.v], 3),
                          valid, a + cond.attend)  # fmt: skip
        local = model.audio_local(feat)
        attends = [BankAttention(self.cos_m, self.sin_m, memory.layer(i)) for i in range(len(model.blocks))]

        def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            mods, fin = self._mods[float(t[0])]
            segs = [("motion", model.motion_in(x) + local)]
            return model.run(segs, mods, attends.__getitem__, fin)

        x = self.sampler.sample(velocity, noise)
        if self.ear_mouth is not None:  # these mouth numbers are the ear's reading (feat's last five), not a sample
            i = self.ear_mouth
            ear = feat[..., -MOUTH.stop :][..., i].clamp(0, 1)
            x = x.clone()
            x[..., i] = (ear - self.reference[:, None, i]) / model.scale[i]
        # the memory pass: the chunk (reading its conditions) at the memory noise level -> the bank
        t_mem = self.engine.memory_t
        x_mem = x if t_mem == 0 else (1 - t_mem) * x + t_mem * torch.randn_like(x)
        segs = [("motion", model.motion_in(x_mem) + local)]
        model.write_pass(segs, self._memory_mods, self.cos_m, self.sin_m, cond, bank, self.bank.chunk_write())
        self.bank.commit(self.next_index * self.chunk_frames)
        self.next_index += 1
        return x


def _copied(stats):
    """The ear's running sums (a tuple of tensors, or None), copied."""
    return None if stats is None else tuple(t.clone() for t in stats)


def padded(audio: np.ndarray, span: tuple[int, int]) -> np.ndarray:
    """audio[first:end] with zeros where the span lies outside the recording."""
    a, b = span
    out = np.zeros(b - a, np.float32)
    lo, hi = max(a, 0), min(b, len(audio))
    if hi > lo:
        out[lo - a : hi - a] = audio[lo:hi]
    return out


def generate(
    engine: MotionEngine,
    audio_16k: np.ndarray,
    reference: np.ndarray | None = None,
    prompts_per_chunk: list[str | None] | None = None,
    seed: int = 0,
    states_per_chunk: list[str | None] | None = None,
) -> np.ndarray:
    """A whole recording's motion, (frames, 16) float32, frames = samples / 640 rounded."""
    audio_16k = np.asarray(audio_16k, np.float32).reshape(-1)
    frames = int(round(len(audio_16k) / SAMPLES_PER_FRAME))
    stream = MotionStream(engine, reference, seed)
    c = stream.chunk_frames
    out = []
    for i in range(-(-frames // c)):
        prompt = prompts_per_chunk[min(i, len(prompts_per_chunk) - 1)] if prompts_per_chunk else None
        state = states_per_chunk[min(i, len(states_per_chunk) - 1)] if states_per_chunk else None
        out.append(stream.chunk(i, padded(audio_16k, stream.audio_span(i)), prompt, state))
    return np.concatenate(out)[:frames] if out else np.zeros((0, engine.cfg.dim), np.float32)


class MotionSource:
    """A render's or a live session's motion, chunk by chunk: the motion engine hearing each chunk with
    its past and look-ahead (`MotionStream.audio_span`), from the whole recording or live from the past
    kept here and the look-ahead that has arrived; or a given track (`--motion`). Both routes draw from
    one: the photo route warps the photo by it, the toon route's video model is told it."""

    def __init__(self, engine: MotionEngine, seed: int, samples: np.ndarray | None, track=None):
        self.track = None if track is None else np.asarray(track, np.float32)
        self.motion = MotionStream(engine, seed=seed)
        self.samples = None if samples is None else np.asarray(samples, np.float32)
        self.chunk_frames = self.motion.chunk_frames
        self.chunk_samples = self.chunk_frames * SAMPLES_PER_FRAME
        a, b = self.motion.audio_span(1)  # chunk 1: away from the stream's start
        self.history_samples = max(0, self.chunk_samples - a)
        self.lookahead_samples = max(0, b - 2 * self.chunk_samples)
        self._history = np.zeros(self.history_samples, np.float32)  # silence before the stream

    def _audio(self, index: int, pcm, lookahead) -> np.ndarray:
        if pcm is None:
            return padded(self.samples, self.motion.audio_span(index))
        pcm = pcm.astype(np.float32)
        # what is known, from `history_samples` before the chunk's start; the span it needs, cut from
        # that (zeros where it reaches past what has arrived)
        known = np.concatenate([self._history, pcm, lookahead[: self.lookahead_samples].astype(np.float32)])
        a, b = self.motion.audio_span(index)
        origin = index * self.chunk_samples - self.history_samples
        if self.history_samples:
            self._history = np.concatenate([self._history, pcm])[-self.history_samples :]
        return padded(known, (a - origin, b - origin))

    def chunk(self, index: int, prompt: str = "", state: str | None = None, pcm=None, lookahead=None) -> np.ndarray:
        """Chunk `index`'s motion (chunk frames, 16): the given track's frames (its last one held past
        its end), or the engine's; live (`pcm`: the chunk's samples) from what has arrived."""
        if self.track is not None:
            rows = np.arange(index * self.chunk_frames, (index + 1) * self.chunk_frames)
            return self.track[np.minimum(rows, len(self.track) - 1)]
        return self.motion.chunk(index, self._audio(index, pcm, lookahead), prompt=prompt or None, state=state)

    def snapshot(self):
        """The state before the next chunk (the engine's and the audio kept); None for a given track."""
        if self.track is not None:
            return None
        return self.motion.snapshot(), self._history.copy()

    def restore(self, state) -> None:
        motion, history = state
        self.motion.restore(motion)
        self._history = history.copy()
