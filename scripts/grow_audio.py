"""Grow a model with the frame-token audio path (preset audio.frame_tokens, model.audio_inject,
model.audio_local) from weights that predate it, e.g. the shipped toon-128:

    python scripts/grow_audio.py --preset runs/a17/toon-128-hear.yaml --out runs/a17/grown.safetensors

Everything that keeps its shape is copied. The new audio encoder starts as the lip refiner's ear
(lips.ear_*: the same 1-D convs and mouth-parameter head, already trained on the world's visemes),
so its tokens say how the mouth is shaped from the first step; its output projection, the
transformer's audio embedding and the audio injection start fresh (the injection at zero).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from safetensors.torch import load_file

from flowact import weights as W
from flowact.config import load_preset
from flowact.model import FlowActModel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", required=True, help="the preset with the frame-token audio path")
    ap.add_argument("--weights", default="src/flowact/assets/toon-128.safetensors", help="weights to grow from")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    preset = load_preset(a.preset)
    if not preset.audio.frame_tokens:
        raise SystemExit(f"{a.preset}: audio.frame_tokens is off, nothing to grow")
    model = FlowActModel(preset)
    model.init_random(a.seed)
    own = model.state_dict()
    old = load_file(a.weights)
    copied, fresh = {}, []
    for k, v in old.items():
        if k in own and own[k].shape == v.shape:
            copied[k] = v.float()
    for k, v in old.items():  # the lip refiner's ear seeds the transformer's audio encoder
        if k.startswith("lips.ear_"):
            dst = "audio." + k[len("lips.") :]
            if dst in own and own[dst].shape == v.shape:
                copied[dst] = v.float()
    for k in own:
        if k not in copied:
            fresh.append(k)
    model.load_state_dict(copied, strict=False)
    with torch.no_grad():
        inj = getattr(model.dit, "audio_inject", None)
        if inj is not None:  # the injection starts at zero: the grown model's output is the old one's
            inj[1].weight.zero_()
            inj[1].bias.zero_()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    W.save(model, a.out, torch.float32)
    modules = sorted({k.rsplit(".", 1)[0] for k in fresh})
    print(f"grown {a.out}: {len(copied)} tensors copied, {len(fresh)} fresh: {modules}")


if __name__ == "__main__":
    main()
