"""Each module's own behaviour: RoPE, VAE causality and streaming, audio windows, text, MMDiT."""

import numpy as np
import torch

import flowact_kernels as K
from flowact.config import load_preset
from flowact.model import FlowActModel
from flowact.model.rope import grid_positions, rope_tables
from flowact.model.vae import DecoderState
from helpers import TINY


def _tiny_model(seed=0):
    m = FlowActModel(load_preset(TINY))
    m.init_random(seed)
    return m.eval()


def test_rope_scores_depend_only_on_relative_position_and_rotations_compose():
    axes, theta, d = (4, 6, 6), 10_000.0, 32
    q, k = torch.randn(1, 1, 1, d), torch.randn(1, 1, 1, d)

    def rot(x, pos):
        c, s = rope_tables(torch.tensor([pos], dtype=torch.float32), axes, theta)
        return K.reference.rope(x, c, s)

    a = (rot(q, [5.0, 2.0, 3.0]) * rot(k, [3.0, 1.0, 1.0])).sum()
    b = (rot(q, [12.0, 7.0, 9.0]) * rot(k, [10.0, 6.0, 7.0])).sum()
    assert torch.allclose(a, b, atol=1e-4)
    c = (rot(q, [5.0, 2.0, 3.0]) * rot(k, [4.0, 1.0, 1.0])).sum()
    assert not torch.allclose(a, c, atol=1e-3)
    # rotating a key written at p by d gives the key written at p + d (bank slot moves rely on it)
    assert torch.allclose(rot(rot(k, [3.0, 1.0, 2.0]), [-2.0, 0.0, 0.0]), rot(k, [1.0, 1.0, 2.0]), atol=1e-5)
    assert grid_positions(7.0, 2, 3).tolist()[4] == [7.0, 1.0, 1.0]


def test_vae_is_causal_and_streaming_decode_equals_whole_decode():
    vae = _tiny_model().vae
    video = torch.randn(1, 3, 9, 64, 64)
    with torch.no_grad():
        z = vae.encode(video)
        assert z.shape == (1, 4, 3, 8, 8)  # first frame alone, then 4 frames per latent
        changed = video.clone()
        changed[:, :, 5:] = 0  # change only the last latent frame's video frames
        z2 = vae.encode(changed)
        assert torch.equal(z[:, :, :2], z2[:, :, :2]) and not torch.allclose(z[:, :, 2], z2[:, :, 2])
        whole = vae.decode(z)
        assert whole.shape == (1, 3, 9, 64, 64)
        st = DecoderState()
        parts = [vae.decode(z[:, :, :1], st), vae.decode(z[:, :, 1:2], st), vae.decode(z[:, :, 2:], st)]
        assert [p.shape[2] for p in parts] == [1, 4, 4]
        assert torch.allclose(torch.cat(parts, 2), whole, atol=1e-5)


def test_reference_decoder_streams_exactly_and_reads_the_reference():
    import dataclasses

    import pytest

    p = load_preset(TINY)
    p = dataclasses.replace(p, vae=dataclasses.replace(p.vae, ref_decoder=True))
    vae = FlowActModel(p).vae.eval()
    torch.manual_seed(0)
    for prm in vae.decoder.ref.parameters():  # the injections start at zero: give them weight
        torch.nn.init.normal_(prm, std=0.05)
    torch.nn.init.normal_(vae.decoder.alpha_out.weight, std=0.05)
    video = torch.randn(1, 3, 9, 64, 64)
    ref = video[:, :, 0]
    with torch.no_grad():
        z = vae.encode(video)
        with pytest.raises(ValueError, match="reference"):
            vae.decode(z)
        whole = vae.decode(z, reference=ref)
        st = DecoderState()
        parts = [
            vae.decode(z[:, :, :1], st, reference=video[:, :, :1]),
            vae.decode(z[:, :, 1:2], st),
            vae.decode(z[:, :, 2:], st),
        ]
        assert torch.allclose(torch.cat(parts, 2), whole, atol=1e-5)
        other = vae.decode(z, reference=torch.zeros_like(ref))
        assert (other - whole).abs().mean() > 1e-3  # the output reads the reference
        # a fully open blend gives the reference's pixels
        torch.nn.init.zeros_(vae.decoder.alpha_out.weight)
        torch.nn.init.constant_(vae.decoder.alpha_out.bias, 30.0)
        assert torch.allclose(vae.decode(z, reference=ref)[:, :, 4], ref, atol=1e-5)


def test_audio_tokens_see_only_their_window():
    m = _tiny_model()
    rate = 16_000
    x = torch.from_numpy(np.random.default_rng(0).standard_normal(rate * 2).astype(np.float32) * 0.1)
    with torch.no_grad():
        mel = m.audio.mel(x)
        assert mel.shape[0] == 2 * 100 + 1  # 10 ms hop, centred frames
        win = m.audio.windows(mel, 3, 2)
        assert win.shape == (2, m.audio.window, 40)
        tok = m.audio(win[None])
        assert tok.shape == (1, 2 * 4, 32)
        # latent frames 3..4 cover video frames 12..19 = 480..800 ms; + 80 ms look-ahead
        y = x.clone()
        y[int(0.95 * rate) :] = 0.0
        tok_y = m.audio(m.audio.windows(m.audio.mel(y), 3, 2)[None])
        assert torch.allclose(tok, tok_y, atol=1e-5)
        y[int(0.75 * rate) :] = 0.0  # inside the window: tokens change
        assert not torch.allclose(tok, m.audio(m.audio.windows(m.audio.mel(y), 3, 2)[None]), atol=1e-4)
        # past the end of the audio the windows read silence, not garbage
        assert torch.all(m.audio.windows(mel, 1000, 1) == -1.0)


def test_text_encoder_prompts():
    m = _tiny_model()
    with torch.no_grad():
        a, b, empty = m.text(["wave hello"]), m.text(["Wave, hello!"]), m.text([""])
        assert a.shape == (1, 4, 32)
        assert torch.allclose(a, b)  # case and punctuation do not matter
        assert torch.equal(empty[0], m.text.null)
        assert not torch.allclose(a, m.text(["nod slowly"]))


def test_patchify_roundtrip_and_velocity_shape():
    dit = _tiny_model().dit
    z = torch.randn(2, 4, 2, 8, 8)
    tokens = dit.patchify(z)
    assert tokens.shape == (2, 2 * 16, 16)
    assert torch.equal(dit.unpatchify(tokens, 2, 8, 8), z)


def test_decoder_mouth_keep_out_lifts_the_blend_only_when_on_and_streams_exactly(tmp_path):
    """The decoder's mouth keep-out: weights that predate it load with it off and draw exactly as
    before; on, a map that covers everything gives the decoder's own drawing (no blend), a map that
    covers nothing gives the blended output; a random map streams exactly."""
    import dataclasses

    from safetensors.torch import save_file

    from flowact import weights as W

    p = load_preset(TINY)
    p = dataclasses.replace(p, vae=dataclasses.replace(p.vae, ref_decoder=True))
    m = FlowActModel(p)
    m.init_random(0)
    vae = m.vae.eval()
    dec = vae.decoder
    torch.manual_seed(0)
    for prm in dec.ref.parameters():
        torch.nn.init.normal_(prm, std=0.05)
    torch.nn.init.normal_(dec.alpha_out.weight, std=0.05)
    torch.nn.init.constant_(dec.alpha_out.bias, 1.0)  # mostly the reference, as the trained blend
    video = torch.randn(1, 3, 9, 64, 64)
    ref = video[:, :, 0]
    with torch.no_grad():
        z = vae.encode(video)
        blended = vae.decode(z, reference=ref)
        # weights saved before the keep-out existed load with it off
        old = {k: v for k, v in m.state_dict().items() if not k.startswith("vae.decoder.mouth")}
        save_file({k: v.contiguous() for k, v in old.items()}, str(tmp_path / "old.safetensors"))
        fresh = FlowActModel(p)
        torch.nn.init.constant_(fresh.vae.decoder.mouth[2].bias, 30.0)  # a map that would cover everything
        W.load_into(fresh, W.resolve(p, weights=str(tmp_path / "old.safetensors")))
        assert float(fresh.vae.decoder.mouth_on) == 0.0
        assert torch.equal(fresh.vae.eval().decode(z, reference=ref), blended)
        # on, everywhere: the decoder's own drawing, as with the blend shut
        dec.mouth_on.fill_(1.0)
        torch.nn.init.zeros_(dec.mouth[2].weight)
        torch.nn.init.constant_(dec.mouth[2].bias, 30.0)
        lifted = vae.decode(z, reference=ref)
        torch.nn.init.constant_(dec.mouth[2].bias, -30.0)
        assert torch.allclose(vae.decode(z, reference=ref), blended, atol=1e-6)  # on, nowhere: as before
        dec.mouth_on.fill_(0.0)
        torch.nn.init.constant_(dec.alpha_out.bias, -30.0)
        torch.nn.init.zeros_(dec.alpha_out.weight)
        assert torch.allclose(lifted, vae.decode(z, reference=ref), atol=1e-6)
        assert (lifted - blended).abs().mean() > 1e-3
        # a random map streams chunk by chunk as it decodes whole
        torch.nn.init.normal_(dec.alpha_out.weight, std=0.05)
        torch.nn.init.normal_(dec.mouth[2].weight, std=0.5)
        dec.mouth_on.fill_(1.0)
        whole = vae.decode(z, reference=ref)
        st = DecoderState()
        parts = [vae.decode(z[:, :, :1], st, reference=video[:, :, :1]), vae.decode(z[:, :, 1:], st)]
        assert torch.allclose(torch.cat(parts, 2), whole, atol=1e-5)
