"""scripts/grow_latent.py: a model grown to more latent channels renders what it did before."""

import dataclasses

import numpy as np
import pytest
import torch

from flowact.config import load_preset
from flowact.model import FlowActModel
from flowact.model.layout import TokenLayout
from helpers import TINY, load_script


def _grow_module():
    return load_script("grow_latent")


@pytest.mark.parametrize("ref_decoder", [False, True])
def test_grown_latent_keeps_reconstruction_and_velocity(ref_decoder):
    p = load_preset(TINY)
    p = dataclasses.replace(p, vae=dataclasses.replace(p.vae, ref_decoder=ref_decoder))
    wide = dataclasses.replace(p, vae=dataclasses.replace(p.vae, latent_channels=2 * p.vae.latent_channels))
    old, new = FlowActModel(p), FlowActModel(wide)
    old.init_random(0)
    new.init_random(1)
    with torch.no_grad():  # latent statistics that are not the identity, as a trained VAE has
        old.vae.latent_mean.uniform_(-0.5, 0.5)
        old.vae.latent_std.uniform_(0.5, 2.0)
    grown = _grow_module().grow(old.state_dict(), new.state_dict(), p.vae.latent_channels, seed=0)
    assert set(grown) == set(new.state_dict())  # every tensor of the wider model is set
    new.load_state_dict(grown)
    old.eval(), new.eval()
    video = torch.rand(1, 3, 9, 64, 64) * 2 - 1  # [reference | 8 frames]
    c = p.vae.latent_channels
    with torch.no_grad():
        z_old, z_new = old.vae.encode(video), new.vae.encode(video)
        torch.testing.assert_close(z_new[:, :c], z_old, atol=1e-5, rtol=1e-5)
        assert z_new[:, c:].abs().max() > 0  # the new channels carry something the decoder may learn to read
        ref = video[:, :, :1]
        torch.testing.assert_close(new.vae.decode(z_new, reference=ref), old.vae.decode(z_old, reference=ref))
        # the transformer: the same velocity on the old channels, zero on the new ones
        x, r = torch.randn(1, 2 * c, 2, 8, 8), torch.randn(1, 2 * c, 1, 8, 8)
        audio, text, t = torch.randn(1, 8, 32), torch.randn(1, 1, 4, 32), torch.tensor([[0.7]])
        layout = TokenLayout.of(p)
        v_old = old.dit.forward_train(r[:, :c], x[:, :c], t, audio, text, layout)
        v_new = new.dit.forward_train(r, x, t, audio, text, layout)
    torch.testing.assert_close(v_new[:, :c], v_old, atol=1e-5, rtol=1e-5)
    assert float(v_new[:, c:].abs().max()) == 0.0
    assert np.isfinite(float(v_new.abs().sum()))
