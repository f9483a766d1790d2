"""int8 block linears: what gets quantised, how close it stays to float, and the stream runs."""

import numpy as np
import torch
import torch.nn as nn

from flowact.config import load_preset
from flowact.model import FlowActModel
from flowact.model.quant import quantizable, quantize_blocks
from flowact.stream.generator import AudioTrack, StreamGenerator, TextTrack

from helpers import TINY


def _model(dtype=torch.float32):
    torch.manual_seed(0)
    m = FlowActModel(load_preset(TINY))
    m.init_random(0)
    return m.eval().to(dtype)


def _stream(model, chunks=4):
    gen = StreamGenerator(model, seed=3)
    p = model.preset
    ref = (np.random.default_rng(0).random((p.video.height, p.video.width, 3)) * 255).astype(np.uint8)
    with torch.no_grad():
        audio = AudioTrack(model, np.random.default_rng(1).standard_normal(16000 * 3).astype(np.float32) * 0.1, "cpu")
        text = TextTrack(model).tokens("speaking")
        gen.start(ref)
        C = p.stream.chunk_latents
        return [gen.chunk(k, audio.tokens(k * C, C), text) for k in range(chunks)]


def test_only_the_block_linears_are_quantised():
    m = _model()
    names = quantizable(m.dit)
    assert len(names) == 4 * len(m.dit.set_names) * m.preset.model.depth
    q, why = quantize_blocks(m.dit)
    assert why is None
    float_linears = {n for n, mod in q.named_modules() if type(mod) is nn.Linear}
    assert not float_linears & set(names)  # every block linear replaced ...
    assert {"final", "embed.video", "t_mlp.0"} <= float_linears  # ... and nothing else
    assert type(m.dit.blocks[0].sets["video"].qkv) is nn.Linear  # the original is left as it was


def test_int8_stream_stays_close_to_float():
    m = _model()
    want = _stream(m)
    m.dit, why = quantize_blocks(m.dit)
    assert why is None
    got = _stream(m)
    for a, b in zip(want, got):
        rel = ((a - b).norm() / a.norm()).item()
        assert 0 < rel < 0.05, rel  # quantised (not a no-op), yet within a few percent


def test_refuses_a_bf16_model_and_says_why():
    m = _model(torch.bfloat16)
    q, why = quantize_blocks(m.dit)
    assert q is m.dit and "float32" in why


def test_engine_int8_modes():
    from flowact.errors import FlowactError
    from flowact.routes import load_route

    auto = load_route(TINY, device="cpu", dtype="float32", random_weights=True)
    assert auto.int8 == "on" and "int8 transformer linears" in auto.conditions()
    assert type(auto.model.dit.blocks[0].sets["video"].qkv) is not nn.Linear
    off = load_route(TINY, device="cpu", dtype="float32", random_weights=True, int8="off")
    assert off.int8 == "off" and "int8" not in off.conditions()
    assert type(off.model.dit.blocks[0].sets["video"].qkv) is nn.Linear
    bf16 = load_route(TINY, device="cpu", dtype="bfloat16", random_weights=True)  # auto: bf16 stays float
    assert bf16.int8 == "off" and type(bf16.model.dit.blocks[0].sets["video"].qkv) is nn.Linear
    try:
        load_route(TINY, device="cpu", dtype="bfloat16", random_weights=True, int8="on")
    except FlowactError as exc:
        assert "--int8 on" in str(exc) and "float32" in str(exc)
    else:
        raise AssertionError("--int8 on with a bf16 model must be refused")
