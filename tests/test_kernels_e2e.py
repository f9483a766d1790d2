"""End to end: a stream rendered with the Triton kernels equals the same stream rendered
with the PyTorch references, on a tiny preset (CPU interpreter, or CUDA when present).
Enough chunks run for the bank to fill, commit, and admit frames into long-term memory,
so every kernel is on the path: attention, QK-norm/RoPE, bank write, bank gather, AdaLN,
gated residual."""

import dataclasses

import numpy as np
import pytest
import torch

pytest.importorskip("flowact_kernels.triton_ops")
import flowact_kernels  # noqa: E402
from flowact_kernels import dispatch  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if DEVICE == "cpu" and not dispatch._triton.INTERPRET:
    pytest.skip("no CUDA and TRITON_INTERPRET unset", allow_module_level=True)


def _tiny_preset():
    from flowact.config import load_preset

    p = load_preset("toon-128")
    return dataclasses.replace(
        p,
        video=dataclasses.replace(p.video, width=32, height=32),  # 4 tokens per latent frame
        model=dataclasses.replace(p.model, width=64, depth=2, heads=2, rope_axes=(4, 6, 6)),
        vae=dataclasses.replace(p.vae, channels=(16, 8, 8)),
        audio=dataclasses.replace(p.audio, width=16),
        text=dataclasses.replace(p.text, tokens=3, width=16, depth=1),
        stream=dataclasses.replace(p.stream, long_term=2, long_term_stride=1),
        sampler=dataclasses.replace(p.sampler, steps=2),
        dtype={"cpu": "float32", "cuda": "float32"},
    )


def _render(backend: str, chunks: int = 4):
    from flowact.model import FlowActModel
    from flowact.stream.generator import StreamGenerator

    preset = _tiny_preset()
    model = FlowActModel(preset)
    model.init_random(seed=3)
    # larger-than-default gates so the bank's contents visibly steer the output
    with torch.no_grad():
        for block in model.dit.blocks:
            for ws in block.sets.values():
                ws.mod_table[2].fill_(0.5)
                ws.mod_table[5].fill_(0.5)
    model = model.to(DEVICE).eval()
    flowact_kernels.set_backend(backend)
    gen = StreamGenerator(model, seed=7)
    rng = np.random.default_rng(0)
    gen.start(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    g = torch.Generator().manual_seed(1)
    out = []
    for i in range(chunks):
        audio = torch.randn(1, gen.C * preset.audio.tokens_per_latent, preset.audio.width, generator=g).to(DEVICE)
        text = torch.randn(1, preset.text.tokens, preset.text.width, generator=g).to(DEVICE)
        out.append(gen.chunk(i, audio, text))
    return torch.cat(out, dim=2), gen.bank


def test_render_with_kernels_equals_reference():
    before = dispatch.backend()
    try:
        ref, ref_bank = _render("reference")
        tri, tri_bank = _render("triton")
    finally:
        flowact_kernels.set_backend(before)
    assert ref_bank.long_term.count(None) == 0, "the render must reach long-term admission"
    assert torch.equal(ref_bank.valid, tri_bank.valid)
    torch.testing.assert_close(tri_bank.k, ref_bank.k, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(tri, ref, atol=1e-4, rtol=1e-4)
