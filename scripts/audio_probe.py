"""Does the transformer use the speech to draw the mouth? A probe on held-out speech.

    python scripts/audio_probe.py --preset runs/t128/toon-128-plain.yaml \
        runs/t128/pretrain.safetensors runs/t128/distill.safetensors --json

For held-out characters and voices (the world's speech windows), each clip's context chunks
are given clean and its last chunk noised to t. The transformer predicts the clean last chunk
(x0 = x_t - t * v) three times: with the clip's own audio, with zero audio (what guidance calls
"unconditional"), and with another clip's audio. Scored on the open mouth's latent cells (the
world's mouth masks on the latent grid, as `--mouth-weight` uses them):

- own < zero and own < other: the model reads the mouth from the speech;
- own = zero = other: it ignores the speech for the mouth (the lips then only follow the
  prompt's state, and a picture with no state prompt barely talks);
- "copy" is the error of repeating the last context latent frame: the bar to beat;
- "closed" is the error of the true latents of the same frames drawn with the mouth at rest
  (same head, eyes, body): how much of the mouth cells' error the mouth itself can explain. A
  model that knew everything but the mouth would score about this with another clip's audio.

Also printed: how much the audio moves the velocity at all (mean |v_own - v_zero|) next to
the velocity's own size. One forward pass per clip, noise level and audio: about 30 s for 12
clips on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch


def speech_windows(count: int, chunks: int, preset, seed: int, engine: str = "espeak", closed: list | None = None):
    """`count` held-out speech windows of `chunks` chunks each, with mouth masks; `engine`: their speech.
    `closed`, a list, receives the same windows drawn with the mouth at rest (the probe's "closed" row)."""
    from flowact.train.data import closed_frames, heldout_speech, mouth_masks
    from flowact.train.sample import AUDIO_MARGIN, Sample, cut_audio, prompt_at
    from flowact.world.clip import FPS

    frames = chunks * preset.frames_per_chunk
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        seconds = max(4.0, frames / FPS + 1.0)
        clip, start = heldout_speech(rng, frames, preset.video.width, preset.video.height, seconds, engine)
        video = np.stack([clip.render(i) for i in range(start, start + frames)])
        rest = closed_frames(clip, start, frames)
        prompts = [prompt_at(clip.segments, (start + i) / FPS) for i in range(frames)]
        audio = cut_audio(clip.audio, start, frames, AUDIO_MARGIN)  # the sound around it, as a stream hears
        mouth = mouth_masks(clip, start, video, rest)
        out.append(Sample(clip.reference(), video, audio, prompts, mouth=mouth, audio_margin=AUDIO_MARGIN))
        if closed is not None:
            closed.append(Sample(clip.reference(), rest, audio, prompts, mouth=mouth, audio_margin=AUDIO_MARGIN))
    return out


@torch.no_grad()
def probe(model, samples, noise_levels=(0.6, 0.9, 1.0), seed: int = 0, closed: list | None = None) -> dict:
    from flowact.train.objective import latent_mouth
    from flowact.train.stages import Stage

    p = model.preset
    C = p.stream.chunk_latents
    st = Stage("pretrain", model, p)
    z = st.latents(samples)
    ref, x0 = z[:, :, :1], z[:, :, 1:]
    b, n = x0.shape[0], x0.shape[2]
    chunks = n // C
    mouth = latent_mouth(samples, x0)[:, :, -C:]
    audio = st.audio_tokens(samples, n)
    text = st.text_tokens(samples, chunks)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    target = x0[:, :, -C:]

    def mouth_err(pred):
        return float(((pred - target).pow(2) * mouth).sum() / (mouth.sum() * pred.shape[1]))

    res = {"clips": b, "noise": {}}
    for tv in noise_levels:
        t = torch.zeros(b, chunks)
        t[:, -1] = tv
        tf = t.repeat_interleave(C, dim=1)[:, None, :, None, None]
        xt = (1 - tf) * x0 + tf * noise
        row, vs = {}, {}
        for name, a in (("own", audio), ("zero", torch.zeros_like(audio)), ("other", audio.roll(1, 0))):
            v = model.dit.forward_train(ref, xt, t, a, text, st.layout)
            vs[name] = v[:, :, -C:]
            row[name] = mouth_err(xt[:, :, -C:] - tv * vs[name])
        row["audio_moves_v"] = float((vs["own"] - vs["zero"]).abs().mean())
        row["v_size"] = float(vs["own"].abs().mean())
        res["noise"][str(tv)] = row
    res["copy"] = mouth_err(x0[:, :, -C - 1 : -C].expand_as(target))
    if closed is not None:  # the true latents of the same frames with the mouth at rest
        res["closed"] = mouth_err(st.latents(closed)[:, :, 1:][:, :, -C:])
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", nargs="+", help="full-model safetensors files (any stage's output)")
    ap.add_argument("--preset", default="toon-128", help="preset name or YAML (the transformer's shape)")
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--chunks", type=int, default=3, help="chunks per window: the last is scored, the rest are context")
    ap.add_argument("--seed", type=int, default=123)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--engine", default="espeak", choices=["espeak", "festival"], help="held-out clips' speech engine")
    ap.add_argument("--json", action="store_true", help="one JSON object per weights file on stdout")
    args = ap.parse_args()
    from flowact import weights as W
    from flowact.config import load_preset
    from flowact.errors import FlowactError
    from flowact.model import FlowActModel

    torch.set_num_threads(args.threads)
    try:
        preset = load_preset(args.preset)
        if args.chunks < 2:
            raise FlowactError("--chunks must be at least 2 (context, then the scored chunk)")
        rest: list = []
        samples = speech_windows(args.clips, args.chunks, preset, args.seed, args.engine, rest)
        for path in args.weights:
            model = FlowActModel(preset)
            W.load_into(model, W.resolve(preset, weights=path))
            res = {"weights": path, **probe(model.eval(), samples, closed=rest)}
            if args.json:
                print(json.dumps(res), flush=True)
                continue
            print(
                f"{path}: mouth-cell x0 error over {res['clips']} held-out speech windows (copy-last-frame "
                f"{res['copy']:.4f}; the true latents with the mouth at rest {res['closed']:.4f})"
            )
            for tv, r in res["noise"].items():
                print(
                    f"  t={tv}: own audio {r['own']:.4f}  zero {r['zero']:.4f}  other clip's {r['other']:.4f}  "
                    f"|v_own - v_zero| {r['audio_moves_v']:.4f} of |v| {r['v_size']:.3f}",
                    flush=True,
                )
    except FlowactError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
