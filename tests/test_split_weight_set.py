"""scripts/split_weight_set.py: a stream given a weight set of its own computes what it did, then trains apart."""

import dataclasses

import pytest
import torch

from flowact.config import load_preset
from flowact.model import FlowActModel
from flowact.model.layout import TokenLayout
from helpers import TINY, load_script


def _split_module():
    return load_script("split_weight_set")


def _models():
    p = load_preset(TINY)
    own = dict(p.model.weight_sets, audio="audio")
    q = dataclasses.replace(p, model=dataclasses.replace(p.model, weight_sets=own))
    old, new = FlowActModel(p), FlowActModel(q)
    old.init_random(0)
    new.init_random(1)
    return p, old, new


def _inputs(p):
    c = p.vae.latent_channels
    g = torch.Generator().manual_seed(3)
    x, r = torch.randn(1, c, 2, 8, 8, generator=g), torch.randn(1, c, 1, 8, 8, generator=g)
    audio, text = torch.randn(1, 8, p.audio.width, generator=g), torch.randn(1, 1, 4, p.text.width, generator=g)
    return r, x, torch.tensor([[0.7]]), audio, text


def test_split_set_computes_what_the_shared_one_did_and_trains_apart():
    p, old, new = _models()
    split = _split_module().split(old.state_dict(), new.state_dict(), "audio", "cond")
    assert set(split) == set(new.state_dict())
    new.load_state_dict(split)
    assert "dit.blocks.0.sets.audio.qkv.weight" in split and "dit.t_mod.audio.weight" in split
    layout = TokenLayout.of(p)
    r, x, t, audio, text = _inputs(p)
    with torch.no_grad():
        v_old = old.dit.forward_train(r, x, t, audio, text, layout)
        v_new = new.dit.forward_train(r, x, t, audio, text, layout)
    torch.testing.assert_close(v_new, v_old, atol=1e-5, rtol=1e-5)
    # the copies are the new set's own: the audio tokens' gradient reaches the audio set, and the
    # text set's gradient is the text tokens' alone (in the shared model it was both streams')
    new.dit.forward_train(r, x, t, audio, text, layout).square().sum().backward()
    old.dit.forward_train(r, x, t, audio, text, layout).square().sum().backward()
    g_audio = new.dit.blocks[0].sets["audio"].qkv.weight.grad
    g_text = new.dit.blocks[0].sets["cond"].qkv.weight.grad
    g_shared = old.dit.blocks[0].sets["cond"].qkv.weight.grad
    assert float(g_audio.abs().max()) > 0 and float(g_text.abs().max()) > 0
    torch.testing.assert_close(g_audio + g_text, g_shared, atol=1e-6, rtol=1e-4)
    assert not torch.allclose(g_text, g_shared, atol=1e-9)


def test_split_names_what_has_no_source():
    _, old, new = _models()
    state = old.state_dict()
    state.pop("dit.blocks.0.sets.cond.out.weight")  # the source of both cond's and audio's copy
    with pytest.raises(SystemExit, match="no source for 2 tensors"):
        _split_module().split(state, new.state_dict(), "audio", "cond")
    # a module the old weights may predate (weights.OPTIONAL_PREFIXES) keeps the model's own init
    state = old.state_dict()
    final = [k for k in state if k.startswith("dit.final.")]
    for k in final:
        state.pop(k)
    out = _split_module().split(state, new.state_dict(), "audio", "cond", optional=("dit.final.",))
    assert final and not any(k in out for k in final)
    with pytest.raises(SystemExit, match="no source for 2 tensors"):
        _split_module().split(state, new.state_dict(), "audio", "cond")
