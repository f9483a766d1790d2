"""Train the evaluator from the world alone, reproducibly: three objectives of the one training
loop (train/loop.py `fit`: seeded, resumable, data-parallel, logged), run in turn by `main`.

Training characters have seeds >= TRAIN_SEED_MIN; held-out characters (seeds below it,
never seen in training) give the accuracy figures written beside the weights.

- judge-audio (`AudioObjective`): speech -> the mouth's openness at 100 per second.
- judge-vision (`VisionObjective`), stage one: windows of consecutive frames of fresh characters
  (the temporal head needs motion) plus the clip's neutral reference; frames are degraded like
  real video (JPEG, blur, noise, colour jitter) and sometimes rendered at another size or aspect
  and brought back through the same centre-crop/resize the evaluator uses. Losses: smooth-L1 on
  the labels, cross-entropy on the states, supervised contrastive loss on the appearance
  embedding (same character = positive).
- judge-states (`StatesObjective`), stage two: the state head on the frozen frame readings.

Under torchrun each rank trains on its share of the windows; BatchNorm's statistics and the
contrastive loss's negatives are then those of the rank's share (as DistributedDataParallel
without SyncBatchNorm would have them).
"""

from __future__ import annotations

import io
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter

from ..train.distributed import Ranks, launched
from ..train.loop import Run, fit
from ..world.behaviour import STATES, neutral_motion
from ..world.clip import REST_MOUTH, make_clip
from ..world.speech import SAMPLE_RATE, random_sentence, random_voice, synthesize
from ..world.visemes import mouth_track
from .frames import label_to_input, prepare, targets, to_input_uint8
from .net import ARCHITECTURE, AUX_PREFIXES, MEL_HOP, MOUTH_KEYS, REG_KEYS, AudioMouth, FrameJudge, log_mel

TRAIN_SEED_MIN = 1_000_000
REG_WEIGHTS = torch.tensor([3.0, 1.5, 1.5, 1.0, 1.0, 1.0, 1.0, 1.0, 0.3, 0.3, 0.5] + [1.0] * 12)
PLACE_WEIGHT = 5.0  # the mouth's place (input units; a pixel is 0.008)
PLACE_JITTER = 0.012  # the mouth reader learns on crops this far off the true centre (and 15% off in size)
SIZES = [((128, 128), 0.6), ((256, 256), 0.15), ((224, 128), 0.15), ((96, 96), 0.1)]
# Share of vision training windows whose drawn mouth is not the one the voice (and so the body)
# implies. In the world the head and body move with the speech's activity, so a frame judge
# trained only on true clips reads "openness" off the body: version 1 scored a speaking clip
# redrawn with the mouth shut at lip-sync 0.60-0.80 (its own clips 0.72-0.86). Drawing some
# windows with a mouth the body cannot predict makes it read the mouth.
DECOUPLE = 0.5


def decoupled_mouth(mouth: np.ndarray, start: int, window: int, rng: np.random.Generator) -> np.ndarray:
    """(window, 5) mouth parameters for frames start.. that the rest of the frame does not predict:
    held still (at rest, or one of the clip's own postures), the clip's track shifted by at least
    a window, or its track played backwards from elsewhere."""
    frames = len(mouth)
    u = rng.random()
    if u < 0.3:
        pose = REST_MOUTH if rng.random() < 0.5 else mouth[int(rng.integers(0, frames))]
        return np.repeat(np.asarray(pose, np.float32)[None], window, 0)
    if u < 0.75:
        off = int(rng.integers(window, max(window + 1, frames - window)))
        return mouth[(np.arange(start, start + window) + off) % frames]
    back = mouth[::-1]
    s = int(rng.integers(0, frames - window + 1))
    return back[s : s + window].copy()


def _degrade(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The same random degradation for a whole window (a video's quality is consistent)."""
    q = int(rng.integers(25, 95)) if rng.random() < 0.6 else None
    blur = float(rng.uniform(0.3, 1.1)) if rng.random() < 0.3 else 0.0
    gain, bias = rng.uniform(0.85, 1.15), rng.uniform(-15, 15)
    noise = rng.uniform(0, 4) if rng.random() < 0.5 else 0.0
    out = []
    for f in frames:
        img = Image.fromarray(f)
        if blur:
            img = img.filter(ImageFilter.GaussianBlur(blur))
        if q:
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=q)
            img = Image.open(buf)
        a = np.asarray(img, np.float32) * gain + bias
        if noise:
            a = a + rng.normal(0, noise, a.shape)
        out.append(np.clip(a, 0, 255).astype(np.uint8))
    return np.stack(out)


def clip_window(
    seed: int,
    rng: np.random.Generator,
    window: int,
    size: tuple[int, int] = (128, 128),
    seconds: float = 3.2,
    degrade: bool = True,
    decouple: float = 0.0,
) -> dict:
    """Frames (window+1, 128, 128, 3) uint8 (the last is the reference), targets, states.

    With chance `decouple` the window's mouth is drawn from `decoupled_mouth` (and labelled so)."""
    clip = make_clip(seed, seconds, *size)
    start = int(rng.integers(0, clip.frames - window + 1))
    mouth = clip.mouth.stack()[start : start + window]
    if decouple and rng.random() < decouple:
        mouth = decoupled_mouth(clip.mouth.stack(), start, window, rng)
    frames = np.stack(
        [clip.renderer.frame(clip.motion, mouth[i], start + i) for i in range(window)] + [clip.reference()]
    )
    frames = np.stack([to_input_uint8(f) for f in frames])
    if degrade:
        frames = np.concatenate(
            [_degrade(frames[:-1], rng), _degrade(frames[-1:], rng) if rng.random() < 0.5 else frames[-1:]]
        )
    m = clip.motion
    joints = clip.renderer.to_label_xy(m.joints)[start : start + window]
    ref = neutral_motion(clip.character)
    place = np.concatenate([clip.renderer.mouth_place(m)[start : start + window], clip.renderer.mouth_place(ref)[:1]])
    sl = slice(start, start + window)
    reg = targets(mouth, m.head[sl], m.gaze[sl], m.blink[sl], joints)
    reg_ref = targets(REST_MOUTH[None], ref.head, ref.gaze, ref.blink, clip.renderer.to_label_xy(ref.joints))
    return {
        "frames": frames,
        "reg": np.concatenate([reg, reg_ref]),
        "state": m.state[sl],
        "state_weight": m.state_weight[sl].astype(np.float32),
        "place": label_to_input(place, *size),
    }


def vision_window(seed: int, step: int, index: int, window: int) -> dict:
    """Window `index` of step `step`'s batch: a training character at one of SIZES, drawn from (seed, step, index)."""
    rng = np.random.default_rng([seed, step, index, 0x7A1])
    sizes, probs = zip(*SIZES)
    size = sizes[int(rng.choice(len(sizes), p=probs))]
    character = int(rng.integers(TRAIN_SEED_MIN, 2**31 - 1))
    return clip_window(character, rng, window, size, decouple=DECOUPLE)


def supcon(emb: torch.Tensor, ident: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Supervised contrastive loss: each embedding is pulled to others of the same identity."""
    emb = emb.float()
    sim = emb @ emb.t() / temperature
    eye = torch.eye(len(emb), dtype=torch.bool)
    sim = sim.masked_fill(eye, -1e9)
    pos = (ident[:, None] == ident[None, :]) & ~eye
    logp = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    return -(logp * pos).sum(1).div(pos.sum(1).clamp(min=1)).mean()


def vision_loss(
    model: FrameJudge, batch: dict, g: torch.Generator, ranks: Ranks = Ranks()
) -> tuple[torch.Tensor, dict]:
    frames = batch["frames"]  # (clips, window+1, 128, 128, 3)
    b, t1 = frames.shape[:2]
    x = frames.reshape(b * t1, *frames.shape[2:]).permute(0, 3, 1, 2).float().div(255)
    feats = model.features(x)
    reg, emb, where = model.read(feats), model.embed(x), model.locate(feats)
    reg, feats = reg.float(), feats.float()
    target = batch["reg"].reshape(b * t1, -1)
    place = batch["place"].reshape(b * t1, 3)
    # the mouth reader learns on crops around the true place, jittered as the locator will err
    jitter = torch.cat(
        [(ranks.rand((b * t1, 2), g) * 2 - 1) * PLACE_JITTER, place[:, 2:] * (ranks.rand((b * t1, 1), g) * 0.3 - 0.15)],
        1,
    )
    mouth = model.read_mouth(x, place + jitter).float()
    reg_loss = (
        F.smooth_l1_loss(reg[:, MOUTH_KEYS:], target[:, MOUTH_KEYS:], reduction="none", beta=0.05)
        * REG_WEIGHTS[MOUTH_KEYS:]
    ).mean()
    mouth_loss = (
        F.smooth_l1_loss(mouth, target[:, :MOUTH_KEYS], reduction="none", beta=0.05) * REG_WEIGHTS[:MOUTH_KEYS]
    ).mean()
    place_loss = F.smooth_l1_loss(where.float(), place, beta=0.005)
    logits = model.aux_states(feats.reshape(b, t1, -1)[:, :-1])
    w = batch["state_weight"].clamp(min=0.3)
    ce = (
        F.cross_entropy(logits.reshape(-1, len(STATES)), batch["state"].reshape(-1), reduction="none") * w.reshape(-1)
    ).mean()
    ident = torch.arange(b).repeat_interleave(t1)
    con = supcon(emb, ident)
    loss = reg_loss * 8 + mouth_loss * 8 + place_loss * PLACE_WEIGHT + ce + con * 0.5
    acc = (logits.argmax(-1) == batch["state"]).float().mean()
    return loss, {
        "reg": reg_loss.item(),
        "mouth": mouth_loss.item(),
        "place_px": (where.detach() - place)[:, :2].abs().mean().item() * 128,
        "ce": ce.item(),
        "con": con.item(),
        "acc": acc.item(),
    }


@torch.no_grad()
def reading_pool(model: FrameJudge, windows: int, window: int = 24, seed: int = 0, log=print) -> dict:
    """Readings of the frozen frame judge over `windows` degraded training windows, with their states.

    Half the windows draw a mouth apart from the voice (DECOUPLE), as in stage one: the state is
    the behaviour the body performs, and a state head that read "speaking" off the mouth alone
    would count a soft or still mouth twice (in lip-sync, and again in behaviour)."""
    rng = np.random.default_rng([seed, 0x57A7E])
    sizes, probs = zip(*SIZES)
    regs, states, weights = [], [], []
    t0 = time.time()
    for k in range(windows):
        size = sizes[int(rng.choice(len(sizes), p=probs))]
        it = clip_window(int(rng.integers(TRAIN_SEED_MIN, 2**31 - 1)), rng, window, size, 4.0, decouple=DECOUPLE)
        x = torch.from_numpy(it["frames"][:-1]).permute(0, 3, 1, 2).float().div(255)
        regs.append(model.readings(x))
        states.append(torch.from_numpy(it["state"]))
        weights.append(torch.from_numpy(it["state_weight"]))
        if k % 100 == 0:
            log(f"states pool {k}/{windows} {time.time() - t0:.0f}s")
    return {"reg": torch.stack(regs), "state": torch.stack(states), "state_weight": torch.stack(weights)}


def audio_example(rng: np.random.Generator, seconds: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """A speech track (16 kHz) with one or two utterances, and the openness at 100 per second."""
    n = int(seconds * SAMPLE_RATE)
    audio = rng.standard_normal(n).astype(np.float32) * float(rng.uniform(1e-4, 3e-3))
    voice = random_voice(rng)
    phonemes = []
    t = float(rng.uniform(-1.0, 0.8))
    while t < seconds - 0.3:
        sp = synthesize(random_sentence(rng, voice.language, (2, 6)), voice)
        a0 = int(t * SAMPLE_RATE)
        lo, hi = max(0, -a0), min(len(sp.samples), n - a0)
        if hi > lo:
            audio[a0 + lo : a0 + hi] += sp.samples[lo:hi] * float(rng.uniform(0.3, 1.2))
        phonemes += [type(p)(p.start + t, p.end + t, p.ipa) for p in sp.phonemes]
        t += sp.seconds + float(rng.uniform(0.1, 1.0))
    frames = n // MEL_HOP
    open_ = mouth_track(phonemes, frames, fps=SAMPLE_RATE / MEL_HOP).open
    return np.clip(audio, -1, 1), open_


# -- the objectives, and their runs through the training loop -------------------------------------
class _JudgeObjective:
    """What the judge's objectives share: all of `model` learns; its weights saved in float32."""

    name = ""

    def __init__(self, model: torch.nn.Module, ranks: Ranks = Ranks(), seed: int = 0):
        self.model, self.ranks, self.seed = model, ranks, seed

    def parameters(self) -> list[torch.nn.Parameter]:
        return list(self.model.parameters())

    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        save_file({k: v.detach().contiguous() for k, v in self.model.state_dict().items()}, str(path))


class AudioObjective(_JudgeObjective):
    """Speech (one or two utterances of a random voice) -> the mouth's openness at 100 per second."""

    name = "judge-audio"

    def batch(self, step: int, rows: range) -> tuple[torch.Tensor, torch.Tensor]:
        ex = [audio_example(np.random.default_rng([self.seed, step, i, 0xA0D])) for i in rows]
        mel = torch.stack([log_mel(torch.from_numpy(a)) for a, _ in ex])
        return mel, torch.from_numpy(np.stack([o for _, o in ex]))

    def loss(self, batch, g):
        mel, y = batch
        loss = F.smooth_l1_loss(self.model(mel)[:, : y.shape[1]].float(), y, beta=0.05)
        return loss, {}


class VisionObjective(_JudgeObjective):
    """Stage one: the frame judge on degraded windows of `window` frames (+ the reference) of fresh characters."""

    name = "judge-vision"

    def __init__(self, model: FrameJudge, ranks: Ranks = Ranks(), seed: int = 0, window: int = 16):
        super().__init__(model, ranks, seed)
        self.window = window

    def batch(self, step: int, rows: range) -> dict:
        items = [vision_window(self.seed, step, i, self.window) for i in rows]
        return {k: torch.from_numpy(np.stack([it[k] for it in items])) for k in items[0]}

    def loss(self, batch, g):
        return vision_loss(self.model, batch, g, self.ranks)


class StatesObjective(_JudgeObjective):
    """Stage two: the state head alone (started afresh) on the frozen frame judge's readings of a
    pool of windows (`reading_pool`), with a little noise: fast, and it generalises."""

    name = "judge-states"

    def __init__(self, judge: FrameJudge, pool: dict, ranks: Ranks = Ranks(), seed: int = 0):
        super().__init__(judge.state_head, ranks, seed)
        self.judge, self.pool = judge, pool
        for p in self.model.parameters():  # start fresh, whatever stage one left here
            if p.ndim > 1:
                torch.nn.init.kaiming_uniform_(p, a=5**0.5)
            else:
                torch.nn.init.zeros_(p)

    def batch(self, step: int, rows: range) -> torch.Tensor:
        windows = len(self.pool["reg"])
        return torch.tensor([int(np.random.default_rng([self.seed, step, i, 0x57A7]).integers(windows)) for i in rows])

    def loss(self, idx, g):
        reg = self.pool["reg"][idx]
        logits = self.judge.states(reg + 0.02 * self.ranks.randn(reg.shape, g)).float()
        w = self.pool["state_weight"][idx].clamp(min=0.3)
        ce = F.cross_entropy(logits.reshape(-1, len(STATES)), self.pool["state"][idx].reshape(-1), reduction="none")
        acc = (logits.argmax(-1) == self.pool["state"][idx]).float().mean()
        return (ce * w.reshape(-1)).mean(), {"acc": acc.item()}


def judge_run(folder: Path, steps: int, batch: int, lr: float, seed: int, resume: bool, bf16: bool | None) -> Run:
    """The judge's recipe for the loop: AdamW with weight decay 1e-4, no gradient clipping, 5% of
    the steps of warm-up then half a cosine to zero (its one-cycle schedule, as first trained)."""
    return Run(out=folder, steps=steps, batch=batch, lr=lr, warmup=max(1, steps // 20), decay=0.95, cosine=True,
               floor=0.0, betas=(0.9, 0.999), weight_decay=1e-4, clip=math.inf, seed=seed, resume=resume,
               save_every=max(1, steps // 6), bf16=bf16, distributed=launched())  # fmt: skip


def progress(log, name: str, every: int):
    """on_step for the loop: a line to `log` at the first step and every `every` steps (rank 0's only)."""
    t0 = time.time()
    main = not launched() or os.environ["RANK"] == "0"

    def on_step(step: int, rec: dict) -> None:
        if main and (step == 1 or step % every == 0):
            parts = " ".join(f"{k} {v:.4f}" for k, v in rec.items() if k in ("loss", "acc"))
            log(f"{name} {step:5d} {parts} {time.time() - t0:.0f}s")

    return on_step


def train_audio(
    folder: Path, steps: int, seed: int = 0, batch: int = 16, lr: float = 3e-3, resume: bool = False, log=print
) -> AudioMouth:
    """The audio model, through the loop: <folder>/judge-audio/ (log, checkpoints) and judge-audio.safetensors."""
    torch.manual_seed(seed)
    model = AudioMouth()
    run = judge_run(folder, steps, batch, lr, seed, resume, bf16=None)
    fit(run, lambda ranks: AudioObjective(model, ranks, seed), progress(log, "audio", 50))
    return model.eval()


def train_vision(
    folder: Path,
    steps: int,
    seed: int = 0,
    clips: int = 10,
    window: int = 16,
    lr: float = 1e-3,
    resume: bool = False,
    log=print,
    model: FrameJudge | None = None,
) -> FrameJudge:
    """Stage one, through the loop: <folder>/judge-vision/ and judge-vision.safetensors. In float32:
    bf16 autocast was faster but the run collapsed."""
    torch.manual_seed(seed)
    model = model or FrameJudge()
    run = judge_run(folder, steps, clips, lr, seed, resume, bf16=False)
    fit(run, lambda ranks: VisionObjective(model, ranks, seed, window), progress(log, "vision", 25))
    return model.eval()


def train_states(
    model: FrameJudge,
    folder: Path,
    steps: int,
    windows: int = 480,
    seed: int = 0,
    lr: float = 2e-3,
    resume: bool = False,
    log=print,
) -> FrameJudge:
    """Stage two, through the loop (32 windows a step): <folder>/judge-states/ and judge-states.safetensors."""
    model.eval()
    pool = reading_pool(model, windows, seed=seed, log=log)
    run = judge_run(folder, steps, 32, lr, seed, resume, bf16=None)
    fit(run, lambda ranks: StatesObjective(model, pool, ranks, seed), progress(log, "states", 100))
    return model.eval()


@torch.no_grad()
def heldout_report(
    model: FrameJudge,
    audio_model: AudioMouth | None = None,
    characters: int = 40,
    seconds: float = 4.0,
    seed: int = 12345,
) -> dict:
    """Accuracy on characters never seen in training (seeds below TRAIN_SEED_MIN)."""
    from .metrics import pearson

    rng = np.random.default_rng(seed)
    char_seeds = rng.choice(TRAIN_SEED_MIN, characters, replace=False)
    errs, state_hits, state_n, embs, refs, audio_r = [], 0, 0, [], [], []
    shifted_err, still_std, leak, place_err = [], [], [], []
    for cs in char_seeds:
        clip = make_clip(int(cs), seconds, 128, 128)
        frames = clip.render_all()
        x = prepare(frames)
        feats = model.features(x)
        reg, emb = model.readings(x, feats), model.embed(x)
        place = label_to_input(clip.renderer.mouth_place(clip.motion), 128, 128)
        place_err.append(np.abs(model.locate(feats).numpy() - place)[:, :2].mean() * 128)
        joints = clip.renderer.to_label_xy(clip.motion.joints)
        y = targets(clip.mouth.stack(), clip.motion.head, clip.motion.gaze, clip.motion.blink, joints)
        errs.append(np.abs(reg.numpy() - y))
        pred = model.states(reg[None])[0].argmax(-1).numpy()
        state_hits += int((pred == clip.motion.state).sum())
        state_n += len(pred)
        embs.append(emb.numpy())
        refs.append(model.embed(prepare(clip.reference()[None])).numpy()[0])
        # The mouth drawn apart from the voice (and so from the body): half the clip later, and at rest.
        true = clip.mouth.stack()
        moved = np.roll(true, clip.frames // 2, axis=0)
        drawn = np.stack([clip.renderer.frame(clip.motion, moved[i], i) for i in range(clip.frames)])
        shifted_err.append(np.abs(model.readings(prepare(drawn)).numpy()[:, 0] - moved[:, 0]).mean())
        still = np.stack([clip.renderer.frame(clip.motion, REST_MOUTH, i) for i in range(clip.frames)])
        still_open = model.readings(prepare(still)).numpy()[:, 0]
        still_std.append(still_open.std())
        if true[:, 0].std() > 0.05:
            leak.append(pearson(still_open, true[:, 0]))
        if audio_model is not None:
            from .evaluate import audio_openness

            audio_r.append(pearson(audio_openness(audio_model, clip.audio, clip.frames), clip.mouth.open))
    err = np.concatenate(errs).mean(0)
    same = np.concatenate([1 - e @ r for e, r in zip(embs, refs)])
    diff = np.concatenate([1 - embs[i] @ refs[(i + 1) % len(refs)] for i in range(len(refs))])
    threshold = float((np.percentile(same, 99) + np.percentile(diff, 1)) / 2)
    report = {
        "heldout_characters": characters,
        "seconds_each": seconds,
        "mae": {k: round(float(v), 4) for k, v in zip(REG_KEYS, err)},
        "mouth_open_mae": round(float(err[0]), 4),
        "mouth_place_error_px": round(float(np.mean(place_err)), 3),
        "head_pose_mae": round(float(err[5:8].mean()), 4),
        "joints_mae_label_units": round(float(err[11:].mean() / 2), 4),
        "state_accuracy": round(state_hits / state_n, 4),
        # the mouth drawn apart from the voice: its openness read back (MAE), how much the reading
        # moves when the mouth stays at rest (the truth's std is about 0.15), and how well that
        # still-mouth reading follows the voice's openness anyway (read off the body: want ~0)
        "mouth_apart_from_voice": {
            "open_mae_shifted": round(float(np.mean(shifted_err)), 4),
            "open_std_at_rest": round(float(np.mean(still_std)), 4),
            "voice_correlation_at_rest": round(float(np.mean(leak)), 4) if leak else None,
        },
        "identity": {
            "same_mean": round(float(same.mean()), 4),
            "same_p95": round(float(np.percentile(same, 95)), 4),
            "different_mean": round(float(diff.mean()), 4),
            "different_p5": round(float(np.percentile(diff, 5)), 4),
            "separation_auc": round(float(_auc(same, diff)), 4),
            "threshold": round(threshold, 4),
        },
    }
    if audio_r:
        report["audio_openness_correlation"] = round(float(np.mean(audio_r)), 4)
    return report


def _auc(same: np.ndarray, diff: np.ndarray) -> float:
    """P(distance of a different character > distance of the same character)."""
    allv = np.concatenate([same, diff])
    ranks = allv.argsort().argsort() + 1
    r = ranks[len(same) :].sum()
    return (r - len(diff) * (len(diff) + 1) / 2) / (len(same) * len(diff))


def save(path: str | Path, vision: FrameJudge, audio: AudioMouth, meta: dict) -> None:
    """The judge in the one weights format (weights.py); `meta` (training facts, held-out scores) in its header."""
    from .. import weights as W

    tensors = {
        f"vision.{k}": v.detach().to(torch.float16 if v.is_floating_point() and v.ndim > 1 else v.dtype).contiguous()
        for k, v in vision.state_dict().items()
        if not k.startswith(AUX_PREFIXES)
    }
    tensors.update({f"audio.{k}": v.detach().contiguous() for k, v in audio.state_dict().items()})
    W.write(path, tensors, "judge", ARCHITECTURE | {"version": meta.get("version")}, meta)


def main(
    steps: int = 600,
    audio_steps: int = 150,
    seed: int = 0,
    out: str | Path | None = None,
    threads: int = 2,
    heldout: int = 40,
    state_steps: int = 600,
    init: str | Path | None = None,
    runs: str | Path = "runs/judge",
    resume: bool = False,
) -> dict:
    """Audio model, frame judge (stage one), state head (stage two), held-out report, save.

    `init`: weights saved by an earlier run; its audio model and frame judge are kept and
    only stage two runs (how the shipped weights were finished: see judge.json). `runs`: the
    stages' logs and checkpoints; `resume` continues each stage from its checkpoint there.
    Under torchrun every rank trains its share and rank 0 writes the report and the weights.
    """
    import torch.distributed as dist

    from . import weights

    torch.set_num_threads(threads)
    out = Path(out) if out else weights.DEFAULT_PATH
    runs = Path(runs)
    if launched() and not dist.is_initialized():  # one process group for the three stages
        dist.init_process_group("gloo")
    t0 = time.time()
    if init is None:
        audio = train_audio(runs, audio_steps, seed, resume=resume)
        vision = train_vision(runs, steps, seed, resume=resume)
        earlier = {}
    else:
        vision, audio, earlier = weights.load_judge(str(init), strict=False)
    vision = train_states(vision, runs, state_steps, seed=seed, resume=resume)
    if dist.is_initialized() and dist.get_rank() > 0:
        return {}
    report = heldout_report(vision, audio, characters=heldout)
    meta = {
        # 2: the mouth read from a crop at its located place; windows drawn with a mouth apart from the voice
        "version": 2,
        "steps": earlier.get("steps", steps),
        "audio_steps": earlier.get("audio_steps", audio_steps),
        "state_steps": state_steps,
        "init": str(init) if init else None,
        "seed": seed,
        "train_seed_min": TRAIN_SEED_MIN,
        "minutes": round((time.time() - t0) / 60 + earlier.get("minutes", 0), 1),
        "identity_threshold": report["identity"]["threshold"],
        "heldout": report,
    }
    save(out, vision, audio, meta)
    out.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    print(json.dumps(report, indent=1))
    return meta


if __name__ == "__main__":  # pragma: no cover
    main()
