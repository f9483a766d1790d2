"""Load the shipped evaluator weights (safetensors, package data) into the judge networks."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path


from ..errors import FlowactError
from .net import AUX_PREFIXES, AudioMouth, FrameJudge

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "assets" / "judge.safetensors"


@lru_cache(maxsize=2)
def load_judge(path: str | None = None, strict: bool = True) -> tuple[FrameJudge, AudioMouth, dict]:
    """(frame judge, audio mouth model, metadata), in eval mode, float32.

    strict=False accepts weights missing some modules (a run from before the state head); the
    training-only auxiliary head (AUX_PREFIXES) is never required.
    """
    from .. import weights as W

    p = Path(path) if path else DEFAULT_PATH
    if not p.is_file():
        raise FlowactError("evaluator weights not found; train them with `python scripts/train_judge.py`", path=p)
    vision, audio = FrameJudge(), AudioMouth()
    sd_v, sd_a = {}, {}
    header, tensors = W.read(p, "judge")
    meta = header.extra
    try:
        for k, t in tensors.items():
            t = t.float() if t.is_floating_point() else t
            (sd_v if k.startswith("vision.") else sd_a)[k.split(".", 1)[1]] = t
        missing, unexpected = vision.load_state_dict(sd_v, strict=False)
        missing = [k for k in missing if not k.startswith(AUX_PREFIXES)]  # training-only, never shipped
        if strict and (missing or unexpected):
            raise RuntimeError(f"missing {missing[:4]}, unexpected {unexpected[:4]}")
        audio.load_state_dict(sd_a)
    except (OSError, RuntimeError, ValueError) as exc:
        raise FlowactError(f"cannot load evaluator weights ({exc})", path=p) from exc
    return vision.eval(), audio.eval(), meta
