"""`flowact eval`: read a video with the judge and score it against audio, reference and timeline."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import torch

from ..errors import FlowactError
from ..world import FPS as WORLD_FPS
from ..world.behaviour import STATES, state_from_prompt
from . import metrics
from .frames import prepare
from .net import MEL_HOP, AudioMouth, FrameJudge, log_mel
from .weights import load_judge

FPS = float(WORLD_FPS)


@torch.no_grad()
def audio_openness(model: AudioMouth, samples: np.ndarray, frames: int | None = None) -> np.ndarray:
    """Mouth openness implied by 16 kHz speech, one value per 25 fps frame."""
    mel = log_mel(torch.from_numpy(np.ascontiguousarray(samples, np.float32)))
    per_mel = model(mel[None])[0].numpy()
    hop = int(16_000 / FPS / MEL_HOP)  # 4 mel frames per video frame
    n = math.ceil(len(per_mel) / hop)
    padded = np.pad(per_mel, (0, n * hop - len(per_mel)), mode="edge")
    out = padded.reshape(n, hop).mean(1).clip(0, 1)
    if frames is not None:
        out = np.pad(out, (0, max(0, frames - n)), mode="edge")[:frames]
    return out


@torch.no_grad()
def read_video(model: FrameJudge, frames: np.ndarray, batch: int = 64) -> dict:
    """Per-frame regression (n, len(REG_KEYS)), embeddings (n, EMBED) and states (n,) from uint8 frames."""
    regs, embs = [], []
    for i in range(0, len(frames), batch):
        x = prepare(frames[i : i + batch])
        regs.append(model.readings(x))
        embs.append(model.embed(x))
    reg = torch.cat(regs)
    states = model.states(reg[None])[0].argmax(-1)
    return {"reg": reg.numpy(), "embed": torch.cat(embs).numpy(), "state": states.numpy()}


def load_timeline(path: str | Path, frames: int, fps: float = FPS) -> np.ndarray:
    """Per-frame state indices from a synth labels file or a list of segments (JSON or YAML)."""
    path = Path(path)
    if not path.is_file():
        raise FlowactError("timeline file not found", path=path)
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        data = json.loads(text)
    except ValueError:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise FlowactError("timeline is neither JSON nor YAML", path=path) from exc
    if isinstance(data, dict):
        data = data.get("timeline", data.get("segments"))
    if not isinstance(data, list) or not data:
        raise FlowactError("timeline must be a list of segments (or an object with a 'timeline' list)", path=path)
    out = np.full(frames, -1, np.int64)
    t = np.arange(frames) / fps
    for k, seg in enumerate(data):
        if not isinstance(seg, dict) or "start" not in seg:
            raise FlowactError(f"timeline segment {k} needs 'start' (seconds) and 'state' or 'prompt'", path=path)
        state = seg.get("state") or state_from_prompt(str(seg.get("prompt", "")))
        if state not in STATES:
            raise FlowactError(
                f"timeline segment {k}: unknown state {state or seg.get('prompt')!r}; "
                f"expected one of {', '.join(STATES)} or a prompt naming one",
                path=path,
            )
        try:
            start = float(seg["start"])
            end = float(seg.get("end", data[k + 1]["start"] if k + 1 < len(data) else frames / fps))
        except (TypeError, ValueError, KeyError) as exc:
            raise FlowactError(f"timeline segment {k}: bad start/end ({exc})", path=path) from exc
        out[(t >= start) & (t < end)] = STATES.index(state)
    if (out < 0).any():  # gaps keep the previous state (or the first one)
        first = out[out >= 0][0] if (out >= 0).any() else 0
        for i in range(frames):
            out[i] = out[i] if out[i] >= 0 else (out[i - 1] if i else first)
    return out


def _read_frames(path: Path) -> tuple[np.ndarray, float]:
    from ..media.probe import probe, read_frames

    if not path.is_file():
        raise FlowactError("video file not found", path=path)
    info = probe(path)
    if not info.width or not info.frames:
        raise FlowactError("no readable video stream", path=path)
    try:
        frames = read_frames(path)
    except (ValueError, subprocess.CalledProcessError) as exc:
        raise FlowactError("cannot decode video", path=path) from exc
    if len(frames) == 0:
        raise FlowactError("video has no frames", path=path)
    fps = info.fps or FPS
    if abs(fps - FPS) > 0.01:  # resample to 25 fps by nearest frame
        idx = np.minimum((np.arange(int(len(frames) / fps * FPS)) * fps / FPS).round().astype(int), len(frames) - 1)
        frames = frames[idx]
    return frames, fps


def evaluate_frames(
    frames: np.ndarray,
    audio: np.ndarray,
    reference: np.ndarray,
    timeline: np.ndarray | None = None,
    weights: str | None = None,
) -> dict:
    """The report for uint8 frames (n, H, W, 3) at 25 fps, 16 kHz audio, uint8 reference (H, W, 3)."""
    vision, audio_model, meta = load_judge(weights)
    read = read_video(vision, frames)
    with torch.no_grad():
        ref_emb = vision.embed(prepare(reference[None])).numpy()[0]
    video_open = read["reg"][:, 0]
    implied = audio_openness(audio_model, audio, len(frames))
    distance = 1 - read["embed"] @ ref_emb
    return {
        "frames": int(len(frames)),
        "fps": FPS,
        "seconds": round(len(frames) / FPS, 3),
        "lipsync": metrics.lipsync(video_open, implied, FPS, voiced=metrics.speech_frames(audio, len(frames))),
        "behaviour": metrics.behaviour(read["state"], timeline, STATES),
        "identity": metrics.identity(distance, FPS, meta.get("identity_threshold")),
        "flicker": metrics.flicker(frames),
        "mouth": {"open_mean": round(float(video_open.mean()), 4), "open_std": round(float(video_open.std()), 4)},
        "judge_version": int(meta.get("version", 1)),
    }


def evaluate_video(
    video: str | Path,
    audio: str | Path,
    reference: str | Path,
    timeline: str | Path | None = None,
    weights: str | None = None,
) -> dict:
    from ..media.audio import load_audio
    from ..media.image import load_image

    frames, source_fps = _read_frames(Path(video))
    samples = load_audio(audio, 16_000, allow_silent=True).samples
    ref = load_image(reference, 128, 128, "cover")
    states = load_timeline(timeline, len(frames)) if timeline is not None else None
    report = evaluate_frames(frames, samples, ref, states, weights)
    report["video"] = str(video)
    report["source_fps"] = source_fps
    return report
