"""Latent cache: synthetic clips encoded once by a trained VAE, for the transformer stages.

The transformer stages never train the VAE, so encoding every batch again is wasted work
(on CPU it was most of a pretrain step). `build_cache` renders training clips from the
synthetic world (training characters and voices only), encodes each whole clip causally
([reference | frames]) exactly as a stream is decoded at inference, and writes shards of

  z (clips, C, 1 + latents, h, w) float16  - latent 0 is the reference
  reference (clips, H, W, 3) uint8        - for the stages that start a real stream
  audio (clips, samples) float16           - 16 kHz, covering the clip
  prompts.json                             - the prompt of every video frame, per clip
  with labels: visemes (clips, frames, 5) float16  - the world's mouth parameters per frame
               mouth (clips, latents, h, w) uint8  - the open mouth on the latent grid (0/255)
               motion (clips, frames, 24) float16  - world/motion_vector.py video_motion (16 numbers + arms)
  with frames: frames (clips, frames, H, W, 3) uint8 - the clip's pixels (for --pixel-weight, a loss
               on the decoded mouth; about 7 MB a clip of 6 s at 128x128)

and `init.safetensors`: the given weights plus the VAE's per-channel latent statistics
(measured here, or the given weights' own with `keep_stats`, for a transformer already
trained on them), which the transformer stages must start from (`--init`).
`speaking` makes that fraction of the clips open with speech (otherwise a third of the frames
speak and a quarter have the mouth open). `LatentSource` serves windows of it aligned to
latent frames (4 video frames), their audio with the margins of sample.AUDIO_MARGIN.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .. import weights as W
from .mouth_masks import mouth_masks
from .objective import mouth_grid
from ..errors import FlowactError
from .sample import AUDIO_MARGIN, FPS, Sample, cut_audio, prompt_at, sample_rng

SHARD = 128  # clips per shard file
STATS = 8  # clips that set the per-channel latent mean and std


def build_cache(
    model,
    out: str | Path,
    clips: int,
    seconds: float,
    seed: int,
    *,
    part: tuple[int, int] = (0, 1),
    on_clip: Callable[[int], None] | None = None,
    speaking: float = 0.0,
    labels: bool = False,
    keep_stats: bool = False,
    frames_too: bool = False,
) -> Path:
    """Encode clips [0, clips) of the training world `seed` into `out`, resumable per shard.
    `part` (k, n) does shards k, k + n, ... only, so n processes can share the work."""
    from ..world.clip import clip_seed, make_clip, split_seed
    from ..world.motion_vector import video_motion

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    p = model.preset
    frames = int(round(seconds * FPS)) // p.vae.temporal * p.vae.temporal
    dev = next(model.vae.parameters()).device

    def clip_video(i: int):
        cs = clip_seed(seed, i)
        opens = {"first_state": "speaking", "lead": 0.0} if np.random.default_rng(cs).random() < speaking else {}
        clip = make_clip(split_seed(cs, "train"), frames / FPS, p.video.width, p.video.height, split="train", **opens)
        ref = clip.reference()
        video = np.concatenate([ref[None], clip.render_all()[:frames]])
        x = torch.from_numpy(video).to(dev).float().div(127.5).sub(1).permute(3, 0, 1, 2)[None]
        return clip, video, x  # video: uint8 [reference | frames]

    if not keep_stats:  # the latent statistics, from the first STATS clips (every part process measures the same)
        model.vae.set_latent_stats([clip_video(i)[2] for i in range(min(STATS, clips))])
    W.save(model, out / "init.safetensors", torch.float32)
    for s0 in range(part[0] * SHARD, clips, part[1] * SHARD):
        path = out / f"shard_{s0 // SHARD:04d}.npz"
        if path.exists():
            continue
        zs, refs, auds, prompts, vis, mouths, pixels, moves = [], [], [], [], [], [], [], []
        for i in range(s0, min(clips, s0 + SHARD)):
            clip, video, x = clip_video(i)
            ref = video[0]
            with torch.no_grad():
                z = model.vae.encode(x)[0].float()
            zs.append(z.cpu().numpy().astype(np.float16))
            refs.append(ref)
            auds.append(cut_audio(clip.audio, 0, frames).astype(np.float16))
            prompts.append([prompt_at(clip.segments, k / FPS) for k in range(frames)])
            if labels:
                vis.append(clip.mouth.stack()[:frames].astype(np.float16))
                moves.append(video_motion(clip)[:frames].astype(np.float16))
                m = torch.from_numpy(mouth_masks(clip, 0, video[1:]))[None]
                grid = mouth_grid(m, z.shape[1] - 1, tuple(z.shape[2:]))[0]
                mouths.append((grid.numpy() * 255).astype(np.uint8))
            if frames_too:
                pixels.append(video[1:])
            if on_clip:
                on_clip(i)
        tmp = path.with_name(path.stem + ".tmp.npz")
        extra = {"visemes": np.stack(vis), "mouth": np.stack(mouths), "motion": np.stack(moves)} if labels else {}
        if frames_too:
            extra["frames"] = np.stack(pixels)
        np.savez(tmp, z=np.stack(zs), reference=np.stack(refs), audio=np.stack(auds), **extra)
        (out / f"shard_{s0 // SHARD:04d}.prompts.json").write_text(json.dumps(prompts))
        tmp.replace(path)
    (out / "cache.json").write_text(
        json.dumps(
            {
                "preset": p.name,
                "clips": clips,
                "seconds": frames / FPS,
                "seed": seed,
                "temporal": p.vae.temporal,
                "speaking": speaking,
                "labels": labels,
                "frames": frames_too,
            }
        )
    )
    return out


class LatentSource:
    """Windows of a latent cache: Sample.latents is (C, 1 + frames/4, h, w), the reference first."""

    def __init__(self, root: str | Path, seed: int = 0):
        self.root = Path(root)
        shards = sorted(self.root.glob("shard_*.npz")) if self.root.is_dir() else []
        if not shards:
            raise FlowactError("no latent cache shards (shard_*.npz) in the folder", path=self.root)
        self.seed = seed
        z, ref, audio, prompts, vis, mouth, pixels, moves = [], [], [], [], [], [], [], []
        for sh in shards:
            with np.load(sh) as d:
                z.append(d["z"])
                ref.append(d["reference"])
                audio.append(d["audio"])
                if "visemes" in d:
                    vis.append(d["visemes"])
                    mouth.append(d["mouth"])
                if "motion" in d:
                    moves.append(d["motion"])
                if "frames" in d:
                    pixels.append(d["frames"])
            prompts += json.loads(sh.with_name(sh.name.replace(".npz", ".prompts.json")).read_text())
        self.z, self.ref, self.audio = np.concatenate(z), np.concatenate(ref), np.concatenate(audio)
        # the world's labels, where every shard has them (`flowact cache --labels`)
        self.visemes = np.concatenate(vis) if len(vis) == len(shards) else None
        self.mouth = np.concatenate(mouth) if len(mouth) == len(shards) else None
        self.motion = np.concatenate(moves) if len(moves) == len(shards) else None  # caches built since 2026-12-06
        self.frames = np.concatenate(pixels) if len(pixels) == len(shards) else None  # `flowact cache --frames`
        self.prompts = prompts
        self.temporal = (
            json.loads((self.root / "cache.json").read_text())["temporal"] if (self.root / "cache.json").exists() else 4
        )

    def __len__(self) -> int:
        return len(self.z)

    def sample(self, step: int, index: int, frames: int) -> Sample:
        rng = sample_rng(self.seed, step, index)
        c = int(rng.integers(0, len(self.z)))
        lat = frames // self.temporal
        have = self.z.shape[2] - 1
        if lat > have:
            raise FlowactError(f"latent cache clips have {have} latent frames, training needs {lat}", path=self.root)
        j = int(rng.integers(0, have - lat + 1))
        z = np.concatenate([self.z[c, :, :1], self.z[c, :, 1 + j : 1 + j + lat]], axis=1).astype(np.float32)
        f0 = j * self.temporal
        audio = cut_audio(self.audio[c].astype(np.float32), f0, frames, AUDIO_MARGIN)
        labels = {}
        if self.visemes is not None:
            labels = {
                "visemes": self.visemes[c, f0 : f0 + frames].astype(np.float32),
                "latent_mouth": self.mouth[c, j : j + lat].astype(np.float32) / 255.0,
            }
        if self.motion is not None:
            labels["motion"] = self.motion[c, f0 : f0 + frames].astype(np.float32)
        pixels = None if self.frames is None else self.frames[c, f0 : f0 + frames]
        return Sample(
            self.ref[c],
            pixels,
            audio,
            self.prompts[c][f0 : f0 + frames],
            latents=z,
            audio_margin=AUDIO_MARGIN,
            **labels,
        )
