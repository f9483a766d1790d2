"""Resumable training state in safetensors + JSON (no pickle): model weights, optimizer
moments, step, and the torch RNG state."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .. import weights as W


def save_checkpoint(
    folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int, extra: dict | None = None
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    names = {id(p): n for n, p in model.named_parameters()}
    tensors, scalars = {}, {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            for key, value in state.items():
                if torch.is_tensor(value) and value.dim() > 0:
                    tensors[f"{names[id(p)]}::{key}"] = value.detach().cpu().contiguous()
                else:
                    scalars[f"{names[id(p)]}::{key}"] = float(value)
    tmp = folder / "ckpt.tmp"
    tmp.mkdir(exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
    save_file(tensors or {"_empty": torch.zeros(1)}, str(tmp / "optim.safetensors"))
    meta = {
        "step": step,
        "scalars": scalars,
        "lr": [g["lr"] for g in optimizer.param_groups],
        "rng": torch.get_rng_state().tolist(),
        "extra": extra or {},
    }
    (tmp / "state.json").write_text(json.dumps(meta))
    # swap in atomically: a crash mid-save leaves the previous checkpoint intact
    final = folder / "ckpt"
    old = folder / "ckpt.old"
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        for f in old.iterdir():
            f.unlink()
        old.rmdir()


def load_checkpoint(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    ck = folder / "ckpt"
    result = model.load_state_dict(load_file(str(ck / "model.safetensors")), strict=False)
    missing = set(result.missing_keys) - W.OPTIONAL_KEYS
    if missing or result.unexpected_keys:
        raise RuntimeError(
            f"checkpoint does not fit the model: missing {sorted(missing)[:3]}, "
            f"unexpected {sorted(result.unexpected_keys)[:3]}"
        )
    meta = json.loads((ck / "state.json").read_text())
    tensors = load_file(str(ck / "optim.safetensors"))
    names = {id(p): n for n, p in model.named_parameters()}
    for group, lr in zip(optimizer.param_groups, meta["lr"]):
        group["lr"] = lr
        for p in group["params"]:
            n = names[id(p)]
            state = {}
            for k, v in tensors.items():
                if k.startswith(n + "::"):
                    state[k.split("::", 1)[1]] = v.to(p.device)
            for k, v in meta["scalars"].items():
                if k.startswith(n + "::"):
                    state[k.split("::", 1)[1]] = torch.tensor(v)
            if state:
                optimizer.state[p] = state
    torch.set_rng_state(torch.tensor(meta["rng"], dtype=torch.uint8))
    return meta
