"""The decoder's fast conv paths compute what the plain ops they replace compute."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from flowact.model.upconv import transposed_kernel, up2_conv
from flowact.model.vae import CausalConv3d


@pytest.mark.parametrize("cin,cout,h,skip", [(8, 4, 5, 0), (16, 8, 8, 3), (4, 6, 7, 5)])
def test_up2_conv_equals_upsample_then_conv(cin, cout, h, skip):
    torch.manual_seed(0)
    conv = nn.Conv2d(cin + skip, cout, 3, padding=1)
    x = torch.randn(2, cin, h, h)
    s = torch.randn(2, skip, 2 * h, 2 * h) if skip else None
    up = F.interpolate(x, scale_factor=2.0, mode="nearest")
    want = conv(torch.cat([up, s], 1) if skip else up)
    with torch.no_grad():  # the cached inference kernel
        torch.testing.assert_close(up2_conv(x, conv, s), want.detach(), rtol=1e-5, atol=1e-5)
    got = up2_conv(x, conv, s)  # and the differentiable one: same gradients as the plain ops
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(want)
    (gw_want,) = torch.autograd.grad(want, conv.weight, g)
    (gw_got,) = torch.autograd.grad(got, conv.weight, g)
    torch.testing.assert_close(gw_got, gw_want, rtol=1e-4, atol=1e-4)


def test_up2_conv_cache_follows_weight_updates():
    conv = nn.Conv2d(4, 4, 3, padding=1)
    x = torch.randn(1, 4, 6, 6)
    with torch.no_grad():
        a = up2_conv(x, conv)
        conv.weight.mul_(2.0)  # in-place update bumps the version: the cached kernel must follow
        b = up2_conv(x, conv)
        torch.testing.assert_close(b - conv.bias[:, None, None], 2 * (a - conv.bias[:, None, None]))


def test_transposed_kernel_of_a_delta_is_nearest_upsampling():
    w = torch.zeros(1, 1, 3, 3)
    w[0, 0, 1, 1] = 1.0  # identity conv: up2_conv must be plain nearest upsampling
    x = torch.arange(9.0).view(1, 1, 3, 3)
    y = F.conv_transpose2d(x, transposed_kernel(w), stride=2, padding=1)
    torch.testing.assert_close(y, F.interpolate(x, scale_factor=2.0, mode="nearest"))


def test_causal_conv_frames_equal_conv3d_and_stream():
    torch.manual_seed(0)
    c = CausalConv3d(6, 5)
    x = torch.randn(2, 6, 7, 5, 5)
    past = x[:, :, :1].expand(-1, -1, 2, -1, -1)
    want = c.conv(torch.cat([past, x], 2))  # the plain causal Conv3d
    with torch.no_grad():
        y, _ = c(x)
        torch.testing.assert_close(y, want.detach(), rtol=1e-5, atol=1e-5)
        # streamed in two calls, the past threads through: same as one call
        y1, p = c(x[:, :, :3])
        y2, _ = c(x[:, :, 3:], p)
        torch.testing.assert_close(torch.cat([y1, y2], 2), want.detach(), rtol=1e-5, atol=1e-5)
    y, _ = c(x)
    g = torch.randn_like(y)
    (gw_want,) = torch.autograd.grad(want, c.conv.weight, g)
    (gw_got,) = torch.autograd.grad(y, c.conv.weight, g)
    torch.testing.assert_close(gw_got, gw_want, rtol=1e-4, atol=1e-4)


def test_first_chunk_decoded_in_pieces_equals_whole():
    """render decodes the first chunk one latent frame at a time (time to first frame)."""
    import numpy as np

    from flowact.config import load_preset
    from flowact.model import FlowActModel
    from flowact.stream.generator import StreamGenerator

    from helpers import TINY

    m = FlowActModel(load_preset(TINY))
    m.init_random(0)
    m.eval()
    p = m.preset
    ref = (np.random.default_rng(0).random((p.video.height, p.video.width, 3)) * 255).astype(np.uint8)
    z = torch.randn(1, p.vae.latent_channels, p.stream.chunk_latents, *p.latent_hw)
    whole, pieces = StreamGenerator(m), StreamGenerator(m)
    whole.start(ref)
    pieces.start(ref)
    want = whole.decode(z)
    got = np.concatenate([pieces.decode(zp, mp, mo) for zp, mp, mo in pieces.split_latents(z, None)])
    assert len(pieces.split_latents(z, None)) == p.stream.chunk_latents
    assert got.shape == want.shape and np.abs(got.astype(int) - want.astype(int)).max() <= 1
