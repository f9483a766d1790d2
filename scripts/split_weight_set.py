"""Give a token stream a transformer weight set of its own (issue "The MMDiT itself lip-syncs", item 3):

    python scripts/split_weight_set.py --preset runs/a3/toon-128-hear-aset.yaml \
        --weights runs/a17/pretrain.safetensors --out runs/a3/split.safetensors

The preset maps the stream to a new set (e.g. `model.weight_sets: {video: video, reference:
video, audio: audio, text: cond}`), where the weights had it share `--from` (default cond, the
set audio shares with text). Every tensor of the new set, in every block and its timestep
modulation, starts as a copy of the old set's, so the split model computes exactly what the
old one did; from there the stream's projections, norms and MLPs train on their own.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import torch


def split(old: dict, new_keys: dict, new_set: str, from_set: str, optional: tuple[str, ...] = ()) -> dict:
    """The new model's state dict: every key the old weights have, and every tensor of weight
    set `new_set` copied from the same tensor of `from_set`. Keys starting with `optional`
    (modules the old weights may predate) are left out when the old weights lack them; any
    other key without a source raises."""
    out, missing = {}, []
    pattern = re.compile(rf"(^|\.)(sets|t_mod)\.{re.escape(new_set)}\.")
    for k, like in new_keys.items():
        if k in old:
            src = k
        elif pattern.search(k):
            src = pattern.sub(lambda m: f"{m.group(1)}{m.group(2)}.{from_set}.", k, count=1)
        elif k.startswith(optional):
            continue
        else:
            missing.append(k)
            continue
        if src not in old or old[src].shape != like.shape:
            missing.append(k)
            continue
        out[k] = old[src].detach().clone()
    if missing:
        raise SystemExit(f"split_weight_set: no source for {len(missing)} tensors, e.g. {missing[:3]}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", required=True, help="the preset that maps the stream to its own set")
    ap.add_argument("--weights", required=True, help="weights where the stream shares --from")
    ap.add_argument("--from", dest="from_set", default="cond", help="the set the new one starts as (default cond)")
    ap.add_argument("--stream", default="audio", help="the stream whose set is new (default audio)")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()

    from safetensors.torch import load_file

    from flowact import weights as W
    from flowact.config import load_preset
    from flowact.model import FlowActModel

    preset = load_preset(a.preset)
    new_set = preset.model.weight_sets[a.stream]
    if new_set == a.from_set:
        raise SystemExit(f"{a.preset}: stream {a.stream} still maps to {a.from_set}: nothing to split")
    model = FlowActModel(preset)
    old = {k: v.float() for k, v in load_file(a.weights).items()}
    optional = W.OPTIONAL_PREFIXES + tuple(W.OPTIONAL_KEYS)
    model.load_state_dict(split(old, model.state_dict(), new_set, a.from_set, optional), strict=False)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    W.save(model, a.out, torch.float32)
    added = sum(v.numel() for k, v in model.state_dict().items() if k not in old)
    print(f"split {a.out}: stream {a.stream} has set {new_set!r} ({added / 1e6:.2f} M parameters, from {a.from_set!r})")


if __name__ == "__main__":
    main()
