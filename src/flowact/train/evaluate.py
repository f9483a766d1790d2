"""Evaluate trained weights on held-out characters and voices with the judge.

For each held-out clip (a character and a voice never used in training) the model streams
the clip from its reference picture, its speech and its prompt timeline, exactly as
`flowact render` does; the judge scores lip-sync, behaviour (state against the timeline)
and identity. The same judge scores the clip's ground-truth frames and their VAE
reconstruction (the ceiling the latent space allows). Drift: one long stream, with the
identity distance to the reference averaged over a window ending at each checkpoint.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ..config import Preset
from ..model import FlowActModel
from ..stream.generator import AudioTrack, StreamGenerator, TextTrack
from ..stream.sampler import EulerSampler, shifted_timesteps
from ..world import FPS
from ..world.motion_vector import video_motion
from .sample import prompt_at as segment_prompt_at


def heldout_clips(
    count: int, seconds: float, width: int, height: int, first_seed: int = 1_000_000, engine: str = "espeak"
):
    """`count` clips whose characters and voices are held out of training; `engine` "festival":
    spoken by Festival's voices (the same characters; sentences and timelines drawn afresh)."""
    from ..world.clip import make_clip, split_seed

    seed = first_seed
    for _ in range(count):
        seed = split_seed(seed, "heldout")
        yield make_clip(seed, seconds, width, height, split="heldout", first_state="speaking", engine=engine)
        seed += 1


def clip_states(clip) -> np.ndarray:
    from ..judge.evaluate import STATES

    out = np.zeros(clip.frames, np.int64)
    t = np.arange(clip.frames) / FPS
    for s in clip.segments:
        out[(t >= s.start) & (t < s.end)] = STATES.index(s.state)
    return out


def prompt_at(clip, t: float) -> str:
    return segment_prompt_at(clip.segments, t)


@torch.no_grad()
def stream(
    model: FlowActModel,
    reference: np.ndarray,
    audio: np.ndarray,
    prompt_of,
    frames: int,
    seed: int = 0,
    steps: int | None = None,
    guidance: float = 1.0,
    guide_on: str = "audio+text",
    guide_below: float = 1.0,
    motion_of=None,
    mute: bool = False,
) -> np.ndarray:
    """Stream `frames` video frames (uint8) as inference does. `steps` replaces the preset's
    step count (same shift); `guidance` > 1 adds classifier-free guidance on audio + text
    (a many-step guided teacher), or on audio alone (`guide_on` "audio"), at noise levels t <=
    `guide_below` only (the distill stage's options of the same names). `motion_of(k)`: chunk k's
    motion as the video model reads it (chunk frames, 24), for a model that reads motion. `mute`: the video
    model hears silence (its audio tokens zero, as training drops them; the motion engine still hears the
    speech): does the audio help beside the motion?"""
    p: Preset = model.preset
    gen = StreamGenerator(model, seed)
    if steps is not None:
        gen.sampler = EulerSampler(tuple(shifted_timesteps(steps, p.sampler.shift)), 1, gen.device)
    atrack, ttrack = AudioTrack(model, audio, gen.device), TextTrack(model)
    gen.start(reference)
    C, per = p.stream.chunk_latents, p.frames_per_chunk
    out = []
    for k in range(-(-frames // per)):
        a, mel = atrack.chunk(k * C, C)
        if mute:
            a = torch.zeros_like(a)
        tx = ttrack.tokens(prompt_of(k * per / FPS))
        m = None if motion_of is None else torch.from_numpy(motion_of(k))[None].to(gen.device)
        if guidance == 1.0:
            z = gen.chunk(k, a, tx, m)
        else:
            bank, dit = gen.bank.view(), model.dit
            null_a, null_t = torch.zeros_like(a), tx if guide_on == "audio" else ttrack.tokens("")

            def velocity(x, t):
                vc = dit(x, t, a, tx, bank, gen.cos, gen.sin, motion=m)
                if float(t.reshape(-1)[0]) > guide_below:
                    return vc
                vu = dit(x, t, null_a, null_t, bank, gen.cos, gen.sin, motion=m)
                return vu + guidance * (vc - vu)

            noise = gen.noise(k)
            z = gen.sampler.sample(velocity, noise)
            gen.remember(k, z, a, tx, noise, m)
        out.append(gen.decode(z, mel, m if p.vae.motion else None))
    return np.concatenate(out)[:frames]


@torch.no_grad()
def motion_for(model: FlowActModel, clip, audio: np.ndarray, prompt_of, seed: int, source: str = "engine"):
    """`stream`'s `motion_of` for a model that reads motion (None for one that does not): the bundled
    motion engine's from the clip's audio and prompts ("engine", what a render does), or the world's
    own labels ("labels", as `flowact render --motion` given them), or the engine whose weights are at
    `source` (a path)."""
    if not model.preset.model.motion_inject:
        return None
    per = model.preset.frames_per_chunk
    if source == "labels":
        truth = video_motion(clip)

        def labels(k):
            rows = np.minimum(np.arange(k * per, (k + 1) * per), len(truth) - 1)
            return truth[rows]

        return labels
    from ..stream.motion import MotionEngine, MotionSource
    from ..world.motion_vector import video_input

    # "engine": the bundled one; a path: another motion engine's weights
    src = MotionSource(MotionEngine.load(None if source == "engine" else source), seed, audio)
    return lambda k: video_input(src.chunk(k, prompt_of(k * per / FPS)))


@torch.no_grad()
def reconstruct(
    model: FlowActModel, reference: np.ndarray, frames: np.ndarray, motion: np.ndarray | None = None
) -> np.ndarray:
    """The VAE's reconstruction of [reference | frames] (frames: a multiple of 4), reference dropped.
    `motion` (frames, D): the frames' motion, for a decoder that reads it (None: the reference's pose)."""
    video = np.concatenate([reference[None], frames])
    prm = next(model.vae.parameters())
    x = torch.from_numpy(video).to(prm.device, prm.dtype).div(127.5).sub(1).permute(3, 0, 1, 2)[None]
    m = None
    if motion is not None and model.preset.vae.motion:
        m = torch.from_numpy(np.concatenate([np.zeros_like(motion[:1]), motion[: len(frames)]]))[None]
    rec = model.vae.decode(model.vae.encode(x), reference=x[:, :, :1], motion=m)[0].float().clamp(-1, 1)
    return ((rec.permute(1, 2, 3, 0) + 1) * 127.5).round().byte().cpu().numpy()[1:]


def psnr(frames: np.ndarray, truth: np.ndarray) -> float:
    err = np.mean((frames.astype(np.float32) - truth.astype(np.float32)) ** 2)
    return round(float(10 * np.log10(255.0**2 / max(err, 1e-10))), 2)


def score(frames: np.ndarray, clip, states: bool = True, judge: str | None = None, truth=None) -> dict:
    """The judge's figures for `frames` of `clip`; `judge`: its weights (None: the shipped ones);
    `truth`: the clip's own frames, for PSNR over the head (upper half) and the body (lower half)."""
    from ..judge.evaluate import evaluate_frames
    from ..judge.metrics import body_changes

    n = len(frames)
    body = body_changes(frames)
    r = evaluate_frames(
        frames, clip.audio[: n * 16_000 // FPS], clip.reference(), clip_states(clip)[:n] if states else None, judge
    )
    return {
        "lipsync": r["lipsync"]["correlation"],
        "lipsync_best": r["lipsync"]["best_correlation"],
        "lipsync_offset_s": r["lipsync"]["best_offset_s"],
        "state_accuracy": r["behaviour"]["accuracy"],
        "identity": r["identity"]["mean"],
        "mouth_std": r["mouth"]["open_std"],
        "flicker": r["flicker"]["second_diff"],
        "body_half_change": body["half_change"],
        "body_flat": body["flat"],
        **(
            {}
            if truth is None
            else {
                "psnr_head": psnr(frames[:, : frames.shape[1] // 2], truth[: len(frames), : frames.shape[1] // 2]),
                "psnr_body": psnr(frames[:, frames.shape[1] // 2 :], truth[: len(frames), frames.shape[1] // 2 :]),
            }
        ),
    }


def evaluate_models(
    models: dict[str, tuple[FlowActModel, dict]],
    clips: int,
    seconds: float,
    log=print,
    engine: str = "espeak",
    judge: str | None = None,
) -> dict:
    """Score every named model (with its `stream` keyword arguments) on the same held-out
    clips, plus the ground truth and the VAE reconstruction (first model's VAE); `engine`: the
    clips' speech engine (`heldout_clips`); `judge`: the judge's weights (None: shipped)."""
    first = next(iter(models.values()))[0]
    p = first.preset
    rows: dict[str, list[dict]] = {"ground_truth": [], "vae_reconstruction": [], **{k: [] for k in models}}
    for i, clip in enumerate(heldout_clips(clips, seconds, p.video.width, p.video.height, engine=engine)):
        gt = clip.render_all()
        n = len(gt) // 4 * 4
        rows["ground_truth"].append(score(gt[:n], clip, judge=judge))
        rec = reconstruct(first, clip.reference(), gt[:n], video_motion(clip))
        rows["vae_reconstruction"].append(score(rec, clip, judge=judge, truth=gt))
        for name, (model, kw) in models.items():
            t = time.perf_counter()
            kw = dict(kw)
            prompt_of = lambda s: prompt_at(clip, s)  # noqa: E731
            kw["motion_of"] = motion_for(model, clip, clip.audio, prompt_of, i, kw.pop("motion", "engine"))
            frames = stream(model, clip.reference(), clip.audio, prompt_of, n, seed=i, **kw)
            rows[name].append(score(frames, clip, judge=judge, truth=gt))
            log(f"clip {i} ({clip.voice.name}) {name}: {rows[name][-1]} [{time.perf_counter() - t:.1f} s]")
    return {name: summarise(r) for name, r in rows.items()}


def summarise(rows: list[dict]) -> dict:
    out = {}
    for key in rows[0]:
        vals = [r[key] for r in rows if r[key] is not None]
        out[key] = round(float(np.mean(vals)), 4) if vals else None
    out["clips"] = len(rows)
    return out


def drift_clip(seed: int, seconds: float, width: int, height: int, engine: str = "espeak"):
    """The held-out clip of drift stream `seed`: the seed-th held-out character and voice from
    2_000_000, stepped as `heldout_clips` steps (consecutive first seeds would give the same one)."""
    from ..world.clip import split_seed

    first = 2_000_000
    for _ in range(seed):
        first = split_seed(first, "heldout") + 1
    return next(heldout_clips(1, seconds, width, height, first_seed=first, engine=engine))


def drift(
    model: FlowActModel,
    marks_s: tuple[float, ...] = (10, 60, 300),
    window_s: float = 5.0,
    seed: int = 0,
    log=print,
    engine: str = "espeak",
    judge: str | None = None,
    **kw,
) -> dict:
    """One continuous stream as long as the last mark, on a held-out character and voice:
    the identity distance to the reference, averaged over the `window_s` seconds before
    each mark, and the lip-sync correlation over that window. `engine`: as `heldout_clips`;
    `judge`: the judge's weights (None: shipped)."""
    from ..judge.evaluate import evaluate_frames

    p = model.preset
    clip = drift_clip(seed, max(marks_s), p.video.width, p.video.height, engine)
    t = time.perf_counter()
    kw = dict(kw)
    prompt_of = lambda s: prompt_at(clip, s)  # noqa: E731
    kw["motion_of"] = motion_for(model, clip, clip.audio, prompt_of, seed, kw.pop("motion", "engine"))
    frames = stream(model, clip.reference(), clip.audio, prompt_of, clip.frames, seed=seed, **kw)
    log(f"drift stream: {len(frames) / FPS:.0f} s of video in {time.perf_counter() - t:.0f} s")
    out = {}
    for m in marks_s:
        a, b = max(0, int((m - window_s) * FPS)), int(m * FPS)  # a mark before window_s: from the start
        r = evaluate_frames(frames[a:b], clip.audio[a * 640 : b * 640], clip.reference(), clip_states(clip)[a:b], judge)
        out[f"{m:g}s"] = {
            "identity": r["identity"]["mean"],
            "lipsync": r["lipsync"]["correlation"],
            "state_accuracy": r["behaviour"]["accuracy"],
        }
    return out
