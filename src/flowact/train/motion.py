"""Training the motion engine (model/motion.py): FlowAct-R1's recipe over motion vectors.

Stages, chained through --init, each resumable (train/checkpoint.py):

- motion-audio: the ear alone predicts the world's five mouth numbers per frame from audio;
- motion-pretrain: chunkwise diffusion forcing with flow matching; a window laid out as the stream
  sees it (`MotionLayout.window`: long-term chunks, short-term chunk, the chunk being denoised),
  every chunk at its own noise level;
- motion-selfforce: the model streams the first chunks of a window itself (the bank, as at
  inference) and learns the next chunk on that generated context;
- motion-distill: the 3-step student matches a guided many-step teacher's trajectory, the
  teacher's steps split evenly over the student's.

Each stage is an objective of the one training loop (train/loop.py `fit`): seeded, resumable,
data-parallel, bf16 where the CPU has it natively. Data (train/motion_data.py): a cache of world
clips built once into <out>/cache.npz; window i of step s drawn from (seed, s, i), its audio
augmented so human voices work.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import FlowactError
from ..model.audio import VISEMES
from ..model.motion import MotionConfig, MotionDiT
from ..stream.motion import SHIFT, STEPS, MotionEngine, MotionStream, save_motion
from ..stream.sampler import shifted_timesteps
from .distributed import Ranks
from .loop import Run, fit
from .motion_data import Batch, ClipCache, build_cache, make_batch
from .stage_names import MOTION_AUDIO, MOTION_DISTILL, MOTION_PRETRAIN, MOTION_SELFFORCE, MOTION_STAGES

MAX_CHUNK = 12  # training windows denoise chunk k in [0, MAX_CHUNK] of a stream (long-term full from 6)
MOUTH_WEIGHT = 2.0  # flow-matching weight of the mouth numbers (lip sync) beside the others (1)


@dataclass
class Window:
    """Chunk k of a batch laid out as `MotionLayout.window(k)`: K = L + 2 slots."""

    chunks: torch.Tensor  # (K,) chunk index into the batch (0 for empty slots)
    first: torch.Tensor  # (b, K)
    keep: torch.Tensor  # (b, K, C)

    @classmethod
    def of(cls, model: MotionDiT, k: int, batch: int) -> "Window":
        chunks, first, keep = model.layout.window(k)
        return cls(
            torch.tensor([max(j, 0) for j in chunks]),
            torch.tensor(first).expand(batch, -1),
            torch.tensor(keep).expand(batch, -1, -1),
        )


def conditioning(model: MotionDiT, b: Batch, chunks: torch.Tensor | None = None, uncond: bool = False):
    """(audio features (b, K, C, feat), ear logits (b, K, C, 5), behaviour tokens (b, K, width)) of the
    batch's chunks (`chunks`: which; None = all). `uncond`: no audio, no behaviour (guidance)."""
    # the ear hears the batch's chunks 0..k in order (its speaker mean runs from chunk 0), then the chosen ones
    bs, kk, c = b.windows.shape[:3]
    feat, logits = model.audio_features(b.windows.reshape(bs, kk * c, *b.windows.shape[3:]))
    feat, logits = feat.view(bs, kk, c, -1), logits.view(bs, kk, c, -1)
    if chunks is not None:
        feat, logits = feat[:, chunks], logits[:, chunks]
        kk = len(chunks)
    state = b.state if chunks is None else b.state[:, chunks]
    words = b.words if chunks is None else b.words[:, chunks]
    no_audio = b.no_audio if chunks is None else b.no_audio[:, chunks]
    if uncond:
        state, words, no_audio = torch.zeros_like(state), torch.zeros_like(words), torch.ones_like(no_audio)
    feat = torch.where(no_audio[..., None, None], model.audio_null.to(feat.dtype), feat)
    beh = model.behaviour(state.flatten(), words.flatten(0, 1)).view(bs, kk, -1)
    return feat, logits, beh


def flow_loss(v: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    n = v.shape[-1]
    w = torch.ones(n)
    w[:VISEMES] = MOUTH_WEIGHT
    return ((v - target) ** 2 * w).mean() * n / w.sum()


# -- the stages ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class MotionSettings:
    p_clean_memory: float = 0.5  # diffusion forcing: a memory chunk is clean with this probability
    ear_weight: float = 1.0  # pretrain/selfforce: the ear keeps predicting the mouth numbers
    teacher_steps: int = 12  # distill: split evenly over the student's 3
    guidance: float = 1.5  # distill: the teacher's classifier-free guidance on audio + behaviour
    rollout_steps: int = 6  # selfforce: Euler steps of the rollout (the many-step model)


class MotionObjective:
    """A motion stage, as the training loop's `Objective` asks: batches of stream windows from the
    clip cache (chunks 0..k of each, one k per step), and a loss on chunk k. Noise comes from
    `ranks.randn`/`rand`: the global batch's draws, this rank's rows."""

    name = ""
    drops = True  # the batch drops states, prompts and audio at random (for guidance)

    def __init__(
        self,
        model: MotionDiT,
        settings: MotionSettings = MotionSettings(),
        teacher: MotionDiT | None = None,
        ranks: Ranks = Ranks(),
        cache: ClipCache | None = None,
        seed: int = 0,
    ):
        self.model, self.s, self.teacher, self.ranks = model, settings, teacher, ranks
        self.cache, self.seed = cache, seed

    def parameters(self) -> list[torch.nn.Parameter]:
        return list(self.model.parameters())

    def chunk_index(self, rng: np.random.Generator) -> int:
        return int(rng.integers(0, MAX_CHUNK + 1))

    def batch(self, step: int, rows: range) -> Batch:
        """Windows `rows` of the step's global batch: k drawn from (seed, step), window i from (seed, step, i)."""
        k = self.chunk_index(np.random.default_rng([self.seed, step, 0x30710]))
        rngs = [np.random.default_rng([self.seed, step, i, 0x30710]) for i in rows]
        return make_batch(self.cache, self.model, rngs, k, drop=self.drops)

    def loss(self, b: Batch, g: torch.Generator) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def save(self, path: Path) -> None:
        save_motion(self.model, path, dtype=torch.float32)


def ear_loss(logits: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(torch.sigmoid(logits), motion[..., :VISEMES])


class AudioStage(MotionObjective):
    name = MOTION_AUDIO
    drops = False

    def parameters(self):
        return [p for n, p in self.model.named_parameters() if n.startswith("ear.")]

    def chunk_index(self, rng):
        return 5  # six chunks: the ear's speaker mean from a cold start to 2 s heard

    def loss(self, b, g):
        bs, kk, c = b.windows.shape[:3]
        _, logits = self.model.audio_features(b.windows.reshape(bs, kk * c, *b.windows.shape[3:]))
        loss = ear_loss(logits.view(bs, kk, c, -1), b.motion)
        return loss, {"ear": loss.item(), "k": b.k}


def denoise_target(x0: torch.Tensor, g: torch.Generator, p_clean: float, ranks: Ranks):
    """Noise every chunk of the window (b, K, C, 16) at its own level -> (x_t, t, noise)."""
    bs, kk = x0.shape[:2]
    t_cur = torch.sigmoid(ranks.randn((bs, 1), g))  # logit-normal for the chunk being made
    t_mem = ranks.rand((bs, kk - 1), g) * (ranks.rand((bs, kk - 1), g) > p_clean)
    t = torch.cat([t_mem, t_cur], 1)
    noise = ranks.randn(x0.shape, g)
    tt = t[..., None, None]
    return (1 - tt) * x0 + tt * noise, t, noise


class PretrainStage(MotionObjective):
    name = MOTION_PRETRAIN

    @property
    def p_clean(self) -> float:
        return self.s.p_clean_memory

    def context(self, b: Batch, w: Window, g: torch.Generator) -> torch.Tensor:
        """The window's clean normalised motion (b, K, C, 16): the labels."""
        return self.model.normalise(b.motion[:, w.chunks].flatten(1, 2), b.reference).view(
            b.motion.shape[0], len(w.chunks), -1, self.model.cfg.dim
        )

    def loss(self, b, g):
        m = self.model
        w = Window.of(m, b.k, b.motion.shape[0])
        x0 = self.context(b, w, g)
        xt, t, noise = denoise_target(x0, g, self.p_clean, self.ranks)
        feat, logits, beh = conditioning(m, b, w.chunks)
        v = m.forward_train(b.reference, xt, t, feat, beh, w.first, w.keep)
        fm = flow_loss(v[:, -1], (noise - x0)[:, -1])
        ear = ear_loss(logits, b.motion[:, w.chunks])
        return fm + self.s.ear_weight * ear, {"flow": fm.item(), "ear": ear.item(), "k": b.k}


def rollout(
    model: MotionDiT, b: Batch, k: int, steps: int, g: torch.Generator, ranks: Ranks = Ranks(), shift: float = SHIFT
) -> torch.Tensor:
    """Chunks 0..k-1 of every window streamed by the model itself through the bank (as at inference):
    (b, k, C, 16) normalised motion."""
    engine = MotionEngine(model, steps, shift)
    stream = MotionStream(engine, b.reference.numpy())
    out = []
    with torch.no_grad():
        feat, _, beh = conditioning(model, b, torch.arange(k))
        for j in range(k):
            noise = ranks.randn((feat.shape[0], feat.shape[2], model.cfg.dim), g)
            out.append(stream.denoise(feat[:, j], beh[:, j : j + 1], noise))
    return torch.stack(out, 1)


class SelfForceStage(PretrainStage):
    name = MOTION_SELFFORCE
    p_clean = 1.0  # the context as streamed: clean

    def chunk_index(self, rng):
        return int(rng.integers(1, MAX_CHUNK + 1))

    def context(self, b, w, g):
        k = int(w.chunks[-1])
        m = self.model
        labels = m.normalise(b.motion.flatten(1, 2), b.reference).view(b.motion.shape)
        own = rollout(m, b, k, self.s.rollout_steps, g, self.ranks)
        x = torch.cat([own, labels[:, k:]], 1)  # generated context, the chunk itself from the labels
        return x[:, w.chunks]


class DistillStage(PretrainStage):
    name = MOTION_DISTILL

    def loss(self, b, g):
        m, teacher, s = self.model, self.teacher, self.s
        w = Window.of(m, b.k, b.motion.shape[0])
        x0 = self.context(b, w, g)
        bs, kk = x0.shape[:2]
        t_all = shifted_timesteps(s.teacher_steps, SHIFT)
        every = s.teacher_steps // STEPS
        noise = self.ranks.randn((bs, 1, *x0.shape[2:]), g)
        xs = [noise]
        with torch.no_grad():
            tc = conditioning(teacher, b, w.chunks)
            tu = conditioning(teacher, b, w.chunks, uncond=True)
            x = noise
            for i in range(s.teacher_steps):
                xt = torch.cat([x0[:, :-1], x], 1)
                t = torch.zeros(bs, kk)
                t[:, -1] = t_all[i]
                vc = teacher.forward_train(b.reference, xt, t, tc[0], tc[2], w.first, w.keep)[:, -1:]
                if s.guidance != 1.0:
                    vu = teacher.forward_train(b.reference, xt, t, tu[0], tu[2], w.first, w.keep)[:, -1:]
                    vc = vu + s.guidance * (vc - vu)
                x = x + (t_all[i + 1] - t_all[i]) * vc
                if (i + 1) % every == 0:
                    xs.append(x)
        feat, logits, beh = conditioning(m, b, w.chunks)
        ts = t_all[::every]
        xin = torch.cat([torch.cat([x0[:, :-1], xs[i]], 1) for i in range(STEPS)], 0)
        t = torch.zeros(STEPS * bs, kk)
        target = []
        for i in range(STEPS):
            t[i * bs : (i + 1) * bs, -1] = ts[i]
            target.append((xs[i + 1] - xs[i]) / (ts[i + 1] - ts[i]))
        rep = (STEPS, 1, 1)
        v = m.forward_train(
            b.reference.repeat(STEPS, 1),
            xin,
            t,
            feat.repeat(STEPS, 1, 1, 1),
            beh.repeat(STEPS, 1, 1),
            w.first.repeat(rep[:2]),
            w.keep.repeat(rep),
        )
        fm = flow_loss(v[:, -1], torch.cat(target, 0)[:, 0])
        ear = ear_loss(logits, b.motion[:, w.chunks])
        return fm + s.ear_weight * ear, {"flow": fm.item(), "ear": ear.item(), "k": b.k}


OBJECTIVES: dict[str, type[MotionObjective]] = {
    o.name: o for o in (AudioStage, PretrainStage, SelfForceStage, DistillStage)
}


# -- a run -----------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class MotionRun(Run):
    """A motion stage's run: the loop's settings (motion's defaults: AdamW without weight decay, a
    cosine to 10% over the whole run), the clip cache, the weights to start from."""

    stage: str
    batch: int = 16
    lr: float = 1e-3
    warmup: int = 50
    decay: float = 1.0
    cosine: bool = True
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    save_every: int = 100
    init: Path | None = None
    teacher: Path | None = None  # distill: the teacher's weights (default: a copy of the student's start)
    clips: int = 800
    cache: Path | None = None  # default <out>/cache.npz, built when missing
    settings: MotionSettings = field(default_factory=MotionSettings)
    config: MotionConfig = field(default_factory=MotionConfig)


def ship(src: Path, dst: Path) -> Path:
    """A trained stage's weights -> the package's file (float16)."""
    return save_motion(MotionEngine.load(src).model, dst, dtype=torch.float16)


def load_model(path: Path) -> MotionDiT:
    return MotionEngine.load(path).model.train().requires_grad_(True)


def train_motion(run: MotionRun, on_step=None) -> dict:
    """One stage through the training loop; returns its summary. Writes <out>/<stage>.safetensors,
    <out>/<stage>/ckpt and log.jsonl. The model is small: it trains on the CPU."""
    if run.stage not in OBJECTIVES:
        raise FlowactError(f"unknown motion stage '{run.stage}' (stages: {', '.join(MOTION_STAGES)})")
    if run.device != "cpu":
        raise FlowactError(f"the motion engine trains on the CPU (its model is small), not {run.device}")

    def make(ranks: Ranks) -> MotionObjective:
        cache_path = run.cache or run.out / "cache.npz"
        if ranks.main and not cache_path.is_file():
            build_cache(cache_path, run.clips, seed=run.seed)
        ranks.barrier()  # the other ranks read the cache rank 0 built
        cache = ClipCache(cache_path)
        if run.init is not None:
            model = load_model(run.init)
        else:
            model = MotionDiT(run.config)
            mean, scale = cache.statistics(run.config.dim)
            model.mean.copy_(torch.from_numpy(mean))
            model.scale.copy_(torch.from_numpy(scale))
        teacher = None
        if run.stage == MOTION_DISTILL:
            teacher = load_model(run.teacher) if run.teacher else copy.deepcopy(model)
            teacher.eval().requires_grad_(False)
        return OBJECTIVES[run.stage](model, run.settings, teacher, ranks, cache, run.seed)

    return fit(run, make, on_step)
