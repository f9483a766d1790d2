"""Training through the inference forward trains on CUDA too: with the Triton kernels chosen
(as `auto` does for CUDA tensors; here forced, under the interpreter) every transformer stage
gives the same parameters a gradient as with the PyTorch references, and the same gradient.
The kernels have no backward, so dispatch must take the reference wherever autograd records.

TRITON_INTERPRET must be set before Triton decorates the kernels, so each run is a fresh
process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")

TESTS = Path(__file__).parent

# One step of a stage: the loss's backward, then for every trainable parameter whether it
# got a gradient and its values (a few, to compare backends).
CHILD = r"""
import json, sys
import numpy as np, torch
sys.path.insert(0, sys.argv[1])
import flowact_kernels
from flowact_kernels import dispatch
from flowact.config import load_preset
from flowact.model import FlowActModel
from flowact.train.data import SynthSource
from flowact.train.stages import Stage, StageSettings, trainable
from helpers import TINY

backend = sys.argv[2]
flowact_kernels.set_backend(backend)
calls = {"triton": 0}
for name in ("rms_norm_rope", "bank_write", "bank_gather_rope", "bank_attention", "adaln_modulate", "gated_residual"):
    fn = getattr(dispatch._triton, name)
    def spy(*a, _fn=fn, **k):
        calls["triton"] += 1
        return _fn(*a, **k)
    setattr(dispatch._triton, name, spy)

torch.manual_seed(0)
p = load_preset(TINY)
out = {}
for name in sys.argv[3].split(","):
    m = FlowActModel(p)
    m.init_random(0)
    with torch.no_grad():  # larger-than-init gates: every block's branch reaches the loss
        for block in m.dit.blocks:
            for ws in block.sets.values():
                ws.mod_table[2].fill_(0.5)
    stage = Stage(name, m, p, StageSettings(teacher_steps=2))
    params = trainable(m, name)
    m.requires_grad_(False)
    for prm in params:
        prm.requires_grad_(True)
    m.train()
    frames = stage.frames_needed(np.random.default_rng(1))
    batch = [SynthSource(3, p.video.width, p.video.height, seconds=2.0).sample(0, 0, frames)]
    before = calls["triton"]
    loss, _ = stage.loss(batch, torch.Generator().manual_seed(0))
    loss.backward()
    ids = {id(prm) for prm in params}
    grads = {}
    for n, prm in m.named_parameters():
        if id(prm) in ids:
            g = prm.grad
            grads[n] = None if g is None else [float(g.abs().sum()), *map(float, g.flatten()[:4])]
    out[name] = {"loss": float(loss), "grads": grads, "triton_calls": calls["triton"] - before}
print("RESULT " + json.dumps(out))
"""

STAGES = ("pretrain", "memory", "selfforce", "distill")


def _grads(backend: str) -> dict:
    env = {**os.environ, "TRITON_INTERPRET": "1", "FLOWACT_KERNELS": "auto"}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(TESTS), backend, ",".join(STAGES)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def _structural(name: str, depth: int) -> bool:
    """Parameters no loss reaches, with either backend: the reference embedding (the reference
    is encoded once, without grad, when the bank is filled), the last block's text-stream
    outputs (nothing reads them), and in selfforce and distill the text encoder (its tokens
    come from the no-grad TextTrack)."""
    last = f"dit.blocks.{depth - 1}.sets.cond."
    return name.startswith(("dit.embed.reference.", "text.")) or name.startswith(
        tuple(last + k for k in ("q_norm", "out.", "mlp_in.", "mlp_out."))
    )


def test_transformer_stages_get_the_reference_gradients_with_triton_kernels():
    from flowact.config import load_preset
    from flowact.train.stages import STAGES as ALL
    from helpers import TINY

    # every stage that trains the transformer is covered (trainable() gives them dit + audio + text;
    # the audio stage trains the audio encoder alone, through no kernel)
    assert {s for s in ALL if s not in ("vae", "decoder", "visemes", "lips", "audio")} == set(STAGES)
    depth = load_preset(TINY).model.depth
    ref, tri = _grads("reference"), _grads("triton")
    for stage in STAGES:
        r, t = ref[stage], tri[stage]
        if stage != "pretrain":  # pretrain's group-causal pass is plain torch; the others run the inference path
            assert t["triton_calls"] > 0, f"{stage}: the Triton kernels never ran (the test would prove nothing)"
        assert abs(r["loss"] - t["loss"]) <= 1e-4 * max(1e-3, abs(r["loss"])), (stage, r["loss"], t["loss"])
        got = {n for n, g in t["grads"].items() if g is not None and g[0] > 0}
        want = {n for n, g in r["grads"].items() if g is not None and g[0] > 0}
        assert got == want, (
            f"{stage}: {len(got)} of {len(want)} parameters got a gradient; missing: {sorted(want - got)[:8]}"
        )
        lacking = [n for n in t["grads"] if n not in got and not _structural(n, depth)]
        assert not lacking, f"{stage}: no gradient for {lacking[:8]}"
        dit = [n for n in t["grads"] if n.startswith("dit.")]
        assert len([n for n in dit if n in got]) >= 0.8 * len(dit), stage
        for n in want:
            a, b = r["grads"][n], t["grads"][n]
            assert all(abs(x - y) <= 1e-3 * max(1e-3, abs(x)) for x, y in zip(a, b)), (stage, n, a, b)
