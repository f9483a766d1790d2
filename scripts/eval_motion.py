"""Evaluate the motion engine on held-out world clips (held-out characters AND voices) and on a
human recording. Prints a markdown report and writes it as JSON (--json).

    python scripts/eval_motion.py [--weights runs/motion/motion-distill.safetensors] [--clips 24]

- lip sync: per mouth number, the correlation of generated vs labelled motion at lag 0 and the
  best lag in -5..5 frames (lag > 0: the generated motion trails the label);
- behaviour: per state, statistics of generated vs labelled motion, and a nearest-centroid state
  classifier fitted on labelled training clips, read on generated held-out chunks (and on the
  labels themselves: the ceiling);
- drift: a 60 s stream, per-number mean/std in the first vs last 10 s, and how much sits at the
  contract's limits;
- human voice: ARCTIC a0007 (pysptk's example data, read as a file), mouth_open vs the loudness
  envelope, at three gains;
- speed: one chunk on one CPU thread.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy.io import wavfile

from flowact.model.motion import frame_windows, mel_frames
from flowact.stream.motion import MotionEngine, MotionStream, generate, padded
from flowact.world.behaviour import STATES
from flowact.world.clip import clip_seed, make_clip, split_seed
from flowact.world.motion_vector import ARM_KEYS, MOTION_KEYS, clip_arms, clip_motion, reference_motion

FPS = 25
LAGS = range(-5, 6)
MOUTH_KEYS = MOTION_KEYS[:5]


def corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    d = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / d) if d > 0 else float("nan")


def lagged(gen: list[np.ndarray], lab: list[np.ndarray], lag: int) -> float:
    """Pooled correlation of gen[t + lag] with lab[t] over clips."""
    g, lb = [], []
    for x, y in zip(gen, lab):
        n = len(x)
        if lag >= 0:
            g.append(x[lag:]), lb.append(y[: n - lag])
        else:
            g.append(x[: n + lag]), lb.append(y[-lag:])
    return corr(np.concatenate(g), np.concatenate(lb))


def chunk_behaviour(clip, c: int = 8) -> tuple[list[str], list[str]]:
    n = -(-clip.frames // c)
    prompts, states = [], []
    for i in range(n):
        t = (i * c + c / 2) / FPS
        seg = next((s for s in clip.segments if s.start <= t < s.end), clip.segments[-1])
        prompts.append(seg.prompt)
        states.append(seg.state)
    return prompts, states


def chunk_features(m: np.ndarray, c: int = 8) -> np.ndarray:
    """(frames, 16) -> (chunks, 32): each chunk's mean and std per number (over 2 chunks for the std)."""
    n = len(m) // c
    x = m[: n * c].reshape(n, c, -1)
    return np.concatenate([x.mean(1), x.std(1)], 1)


def heldout_clips(count: int, seconds: float, seed: int = 777):
    return [
        make_clip(split_seed(clip_seed(seed, i), "heldout"), seconds, 128, 128, split="heldout") for i in range(count)
    ]


def labels(clip, arms: bool) -> np.ndarray:
    """The clip's motion labels: the 16, and with `arms` the 8 arm numbers (absolute, as an engine makes them)."""
    m = clip_motion(clip)
    return np.concatenate([m, clip_arms(clip)], 1) if arms else m


def lip_sync(engine, clips, with_behaviour: bool) -> dict:
    gens, labs = [], []
    arms = engine.cfg.arms > 0
    for i, clip in enumerate(clips):
        prompts, states = chunk_behaviour(clip) if with_behaviour else (None, None)
        gens.append(generate(engine, clip.audio, reference_motion(clip), prompts, seed=i, states_per_chunk=states))
        labs.append(labels(clip, arms))
    out = {}
    keep = [~label_gap(lb) for lb in labs]
    for j, key in enumerate(MOUTH_KEYS):
        r = {lag: lagged([g[:, j] for g in gens], [lb[:, j] for lb in labs], lag) for lag in LAGS}
        best = max(r, key=lambda k: r[k] if np.isfinite(r[k]) else -9)
        outside = lagged([g[k, j] for g, k in zip(gens, keep)], [lb[k, j] for lb, k in zip(labs, keep)], 0)
        out[key] = {"r_lag0": round(r[0], 3), "best_lag": best, "r_best": round(r[best], 3),
                    "r_lag0_outside_label_gaps": round(outside, 3)}  # fmt: skip
    out["label_gap_share"] = round(float(1 - np.concatenate(keep).mean()), 3)
    return out, gens, labs


def label_gap(lab: np.ndarray) -> np.ndarray:
    """Frames whose mouth labels are all exactly 0. Until 2026-12-06 world/visemes.py mouth_track weighed its
    rest shape only outside the clip's first..last phoneme, so a pause between two utterances far from every
    phoneme was labelled all 0 (15% of held-out frames), which no audio tells from the rest-labelled silence
    at a clip's ends. Every silence is the rest shape now: kept as a check (the share should be 0)."""
    return (lab[:, :4] == 0).all(1)


def ear_track(engine, audio: np.ndarray) -> np.ndarray:
    """The ear alone (model/motion.py MotionEar, deterministic) over a recording heard from its start chunk
    by chunk as the stream hears it: the five mouth numbers, (frames, 5)."""
    m = engine.model
    c = m.cfg.chunk_frames
    frames = int(round(len(audio) / 640))
    stream = MotionStream(engine, None)
    spans = [torch.from_numpy(padded(audio, stream.audio_span(i))) for i in range(-(-frames // c))]
    with torch.no_grad():
        wins = torch.cat([frame_windows(mel_frames(m.mel, a), c, m.cfg.window) for a in spans])
        _, logits = m.audio_features(wins[None])
    return torch.sigmoid(logits[0]).numpy()[:frames]


def ear_reading(engine, clips) -> dict:
    """The ear alone: per mouth number, r at lag 0 over the clips; on ARCTIC a0007, its mouth_open vs loudness."""
    gens = [ear_track(engine, clip.audio) for clip in clips]
    labs = [clip_motion(clip)[:, :5] for clip in clips]
    out = {k: round(lagged([g[:, j] for g in gens], [lb[:, j] for lb in labs], 0), 3) for j, k in enumerate(MOUTH_KEYS)}
    keep = [~label_gap(lb) for lb in labs]
    for j, k in enumerate(MOUTH_KEYS):
        r = lagged([g[m, j] for g, m in zip(gens, keep)], [lb[m, j] for lb, m in zip(labs, keep)], 0)
        out[f"{k} outside label gaps"] = round(r, 3)
    x = read_arctic()
    for gain_db in (-20, 0, 10):
        y = np.clip(x * 10 ** (gain_db / 20), -1, 1)
        m = ear_track(engine, y)
        env = np.sqrt(np.mean(padded(y, (0, len(m) * 640)).reshape(len(m), 640) ** 2, 1))
        out[f"arctic open vs loudness {gain_db:+d} dB"] = round(lagged([m[:, 0]], [env], 0), 3)
    return out


def behaviour_report(engine, clips, gens, labs, train_clips) -> dict:
    # nearest-centroid state classifier on labelled training clips' chunk features (with the arms where the
    # engine makes them)
    feats, ys = [], []
    for clip in train_clips:
        f = chunk_features(labels(clip, gens[0].shape[1] > 16))
        feats.append(f)
        ys.append([STATES.index(s) for s in chunk_behaviour(clip)[1][: len(f)]])
    f, y = np.concatenate(feats), np.concatenate(ys)
    mu, sd = f.mean(0), f.std(0) + 1e-6
    cent = {s: ((f[y == s] - mu) / sd).mean(0) for s in np.unique(y)}

    def classify(x):
        z = (x - mu) / sd
        keys = list(cent)
        d = np.stack([((z - cent[k]) ** 2).sum(1) for k in keys], 1)
        return np.array(keys)[d.argmin(1)]

    acc_gen, acc_lab, per_state = [], [], {}
    for clip, g, lb in zip(clips, gens, labs):
        st = np.array([STATES.index(s) for s in chunk_behaviour(clip)[1]])
        fg, fl = chunk_features(g), chunk_features(lb)
        n = len(fg)
        acc_gen.append(classify(fg) == st[:n])
        acc_lab.append(classify(fl) == st[:n])
        for s, a, b in zip(st[:n], fg, fl):
            per_state.setdefault(STATES[s], []).append((a, b))
    idx = {k: MOTION_KEYS.index(k) for k in ("mouth_open", "head_pitch", "head_yaw", "gaze_y", "body_shrug")}
    stats = {}
    for s, rows in sorted(per_state.items()):
        a = np.array([r[0] for r in rows])
        b = np.array([r[1] for r in rows])
        stats[s] = {
            "chunks": len(rows),
            "mouth_open_mean": (
                round(float(a[:, idx["mouth_open"]].mean()), 3),
                round(float(b[:, idx["mouth_open"]].mean()), 3),
            ),
            "head_pitch_std": (
                round(float(a[:, 16 + idx["head_pitch"]].mean()), 3),
                round(float(b[:, 16 + idx["head_pitch"]].mean()), 3),
            ),
            "gaze_y_mean": (round(float(a[:, idx["gaze_y"]].mean()), 3), round(float(b[:, idx["gaze_y"]].mean()), 3)),
            "body_shrug_mean": (
                round(float(a[:, idx["body_shrug"]].mean()), 3),
                round(float(b[:, idx["body_shrug"]].mean()), 3),
            ),
        }
    return {
        "state_accuracy_generated": round(float(np.concatenate(acc_gen).mean()), 3),
        "state_accuracy_labels": round(float(np.concatenate(acc_lab).mean()), 3),
        "chance": round(1 / len(cent), 3),
        "per_state (generated, labelled)": stats,
    }


def drift(engine, seconds: float = 60.0) -> dict:
    clip = make_clip(split_seed(clip_seed(999, 0), "heldout"), seconds, 128, 128, split="heldout")
    prompts, states = chunk_behaviour(clip)
    g = generate(engine, clip.audio, reference_motion(clip), prompts, seed=0, states_per_chunk=states)[:, :16]
    lab = clip_motion(clip)
    ten = 10 * FPS
    first, last = g[:ten], g[-ten:]
    lo = np.array([0] * 5 + [-1] * 5 + [0, -1, -0.3, -1, -1, -1], np.float32)
    hi = np.ones(16, np.float32)

    def at_limits(x):  # the mouth may rest at 0: counted over the other numbers
        return float(((np.abs(x - lo) < 1e-4) | (np.abs(x - hi) < 1e-4))[:, 5:].mean())

    return {
        "frames": len(g),
        "std_first_10s": round(float(first.std(0).mean()), 3),
        "std_last_10s": round(float(last.std(0).mean()), 3),
        "labelled_std": round(float(lab.std(0).mean()), 3),
        "mean_abs_shift_first_vs_last": round(float(np.abs(first.mean(0) - last.mean(0)).mean()), 3),
        "labelled_shift_first_vs_last": round(float(np.abs(lab[:ten].mean(0) - lab[-ten:].mean(0)).mean()), 3),
        "max_abs": round(float(np.abs(g).max()), 3),
        "share_at_limits_non_mouth": round(at_limits(g), 4),
        "labelled_share_at_limits": round(at_limits(np.clip(lab, lo, hi)), 4),
        "per_number_share_at_limits": {
            k: round(float(v), 3)
            for k, v in zip(MOTION_KEYS, ((np.abs(g - lo) < 1e-4) | (np.abs(g - hi) < 1e-4)).mean(0))
            if v > 0.005
        },
        "mouth_open_r_lag0": round(corr(g[:, 0], lab[:, 0]), 3),
    }


def read_arctic() -> np.ndarray:
    folder = Path(importlib.util.find_spec("pysptk").submodule_search_locations[0]) / "example_audio_data"
    rate, x = wavfile.read(folder / "arctic_a0007.wav")
    assert rate == 16_000
    return x.astype(np.float32) / 32768


def arctic(engine) -> dict:
    x = read_arctic()
    out = {}
    for gain_db in (-20, 0, 10):
        y = np.clip(x * 10 ** (gain_db / 20), -1, 1)
        m = generate(engine, y, None, None, seed=0)
        n = len(m)
        env = np.sqrt(np.mean(padded(y, (0, n * 640)).reshape(n, 640) ** 2, 1))
        r = {lag: lagged([m[:, 0]], [env], lag) for lag in LAGS}
        best = max(r, key=r.get)
        out[f"gain {gain_db:+d} dB"] = {
            "r_lag0": round(r[0], 3),
            "best_lag": best,
            "r_best": round(r[best], 3),
            "mouth_open_mean": round(float(m[:, 0].mean()), 3),
            "mouth_open_max": round(float(m[:, 0].max()), 3),
        }
    return out


def speed(engine, chunks: int = 200) -> dict:
    torch.set_num_threads(1)
    stream = MotionStream(engine)
    a, b = stream.audio_span(0)
    audio = (np.random.default_rng(0).standard_normal(b - a) * 0.1).astype(np.float32)
    times = []
    for i in range(chunks):
        t = time.perf_counter()
        stream.chunk(i, audio, prompt="talking to the camera")
        times.append(time.perf_counter() - t)
    times = np.array(times[10:]) * 1000
    return {"median_ms": round(float(np.median(times)), 2), "p90_ms": round(float(np.percentile(times, 90)), 2)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", default=None)
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--json", default=None)
    ap.add_argument("--ear-only", action="store_true", help="only the ear's reading of the mouth (quick)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    engine = MotionEngine.load(args.weights)
    clips = heldout_clips(args.clips, args.seconds)
    if args.ear_only:
        print(json.dumps({"ear_alone_heldout r_lag0": ear_reading(engine, clips)}))
        return
    train_clips = [make_clip(split_seed(clip_seed(4242, i), "train"), 10.0, 128, 128, split="train") for i in range(40)]
    report = {"speed_one_thread": speed(engine)}
    lips, gens, labs = lip_sync(engine, clips, with_behaviour=True)
    report["lip_sync_heldout (prompt + state)"] = lips
    report["lip_sync_heldout (audio only)"] = lip_sync(engine, clips, with_behaviour=False)[0]
    report["ear_alone_heldout r_lag0"] = ear_reading(engine, clips)
    if engine.cfg.arms:
        report["arms_heldout r_lag0 (prompt + state)"] = {
            k: round(lagged([g[:, 16 + j] for g in gens], [lb[:, 16 + j] for lb in labs], 0), 3)
            for j, k in enumerate(ARM_KEYS)
        }
        report["behaviour_heldout (with the arms)"] = behaviour_report(engine, clips, gens, labs, train_clips)
        gens, labs = [g[:, :16] for g in gens], [lb[:, :16] for lb in labs]
    report["behaviour_heldout"] = behaviour_report(engine, clips, gens, labs, train_clips)
    report["drift_60s"] = drift(engine)
    report["arctic_a0007 mouth_open vs loudness"] = arctic(engine)
    print(json.dumps(report, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
