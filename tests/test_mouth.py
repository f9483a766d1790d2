"""The mouth drawn as the motion says (model/mouth.py): placed where the world puts it, drawn as the world
draws it, reached by the motion in the decoder (and only near the mouth), exact when streamed, and the
shipped rig finding held-out characters' mouths."""

import dataclasses

import numpy as np
import pytest
import torch

from flowact.config import load_preset
from flowact.errors import FlowactError
from flowact.model import FlowActModel
from flowact.model.mouth import BELOW_EYES, BODY, HEAD, HEAD_Y, MOUTH, REST_MOUTH, SMILE, draw_mouth, mouth_place
from flowact.model.vae import DecoderState
from flowact.stream.generator import StreamGenerator
from flowact.world import behaviour, clip as world_clip, draw
from flowact.world.behaviour import neutral_motion
from flowact.world.canvas import shade
from flowact.world.character import sample_character
from flowact.world.clip import make_clip, split_seed
from flowact.world.draw import Renderer
from flowact.world.motion_vector import MOTION_KEYS, VIDEO_MOTION_DIM, video_motion
from helpers import TINY

SIZE = 128


def world_rig(c, r: Renderer):
    """A character's mouth at rest as MouthRig gives it, from the world's own numbers: centre (1, 2) px,
    unit (1,), shape (1, 3), colours (1, 3, 3)."""
    x, y, _ = r.mouth_place(neutral_motion(c))[0]
    centre = torch.tensor([[(x - 0.5) * SIZE + SIZE / 2, y * SIZE]], dtype=torch.float32)
    around = shade(c.hair, 0.9) if c.facial_hair == "beard" else c.skin
    edge = c.outline if c.line_style == "outlined" else c.lips
    colours = torch.tensor([c.lips, edge, around], dtype=torch.float32)[None] / 127.5 - 1
    return centre, torch.tensor([c.scale * SIZE]), torch.tensor([[c.mouth_width, c.head_rx, c.head_ry]]), colours


def test_the_layout_is_the_worlds():
    assert MOTION_KEYS[MOUTH] == ("mouth_open", "mouth_width", "mouth_round", "mouth_closed", "mouth_teeth")
    assert MOTION_KEYS[HEAD] == ("head_yaw", "head_pitch", "head_roll") and MOTION_KEYS[SMILE] == "smile"
    assert MOTION_KEYS[BODY] == ("body_sway", "body_breath", "body_shrug")
    assert np.allclose(REST_MOUTH, world_clip.REST_MOUTH) and HEAD_Y == behaviour.HEAD_Y
    assert BELOW_EYES == draw.MOUTH_BELOW_EYES


def posed(seed: int, rng: np.random.Generator):
    """A character turned, nodded, tilted and swaying, and a random mouth: (character, renderer, motion of the
    world, the video model's 24 numbers (1, 1, 24), the mouth's five numbers)."""
    c = sample_character(seed)
    r = Renderer(c, SIZE, SIZE)
    m = neutral_motion(c)
    m.head[0] = rng.uniform(-0.6, 0.6, 3)
    m.body[0] = rng.uniform(-0.3, 0.3, 3)
    mouth = rng.uniform(0, 1, 5).astype(np.float32)
    mouth[4] *= rng.random() < 0.3
    mouth[0] *= rng.random() > 0.3
    v = torch.zeros(1, 1, VIDEO_MOTION_DIM)
    v[0, 0, HEAD] = torch.tensor(m.head[0], dtype=torch.float32)
    v[0, 0, BODY] = torch.tensor(m.body[0], dtype=torch.float32)
    return c, r, m, v, mouth


def test_the_mouth_is_placed_and_drawn_as_the_world_draws_it():
    """From the world's own character numbers: each posed frame's mouth centre within 0.01 px of the world's;
    the rest frame with this mouth drawn on it within 3 levels (of 255) of the world's frame around the mouth,
    where the rest frame itself is 2.5x as far (characters without facial hair, whose mouth is not at the
    picture's edge)."""
    rng = np.random.default_rng(1)
    drawn, rest = [], []
    for seed in range(1, 60):
        c, r, m, v, mouth = posed(seed, rng)
        centre, unit, shape, colours = world_rig(c, r)
        at, angle = mouth_place(centre, unit, shape, v)
        x, y, _ = r.mouth_place(m)[0]
        assert np.abs(at[0, 0].numpy() - [(x - 0.5) * SIZE + SIZE / 2, y * SIZE]).max() < 0.01
        cx, cy = (int(q) for q in at[0, 0])
        if c.facial_hair != "none" or not (20 < cx < SIZE - 20 and 20 < cy < SIZE - 20):
            continue
        want = r.frame(m, mouth, 0).astype(np.float32)
        base = r.frame(m, world_clip.REST_MOUTH, 0).astype(np.float32)
        frame = torch.from_numpy(base).permute(2, 0, 1)[None] / 127.5 - 1
        out = draw_mouth(frame, at[0], angle[0], unit, shape, colours, torch.from_numpy(mouth)[None],
                         torch.tensor([float(m.smile[0])]))  # fmt: skip
        got = (out[0].permute(1, 2, 0) + 1) * 127.5
        sl = (slice(cy - 10, cy + 10), slice(cx - 14, cx + 14))
        drawn.append(float((got.numpy()[sl] - want[sl]).__abs__().mean()))
        rest.append(float(np.abs(base[sl] - want[sl]).mean()))
    assert len(drawn) >= 15, len(drawn)
    assert np.mean(drawn) < 3.0 and np.mean(rest) > 2.5 * np.mean(drawn), (np.mean(drawn), np.mean(rest))


def test_what_the_picture_has_in_front_of_its_mouth_stays_in_front():
    """A moustache or a goatee in the reference picture is carried with the head and drawn over a wide-open
    mouth, as the world draws it, even where the decoder's frame has lost it (a frame of the same character
    without it): on the moustache's pixels, under 0.6x the error without the picture (33 against 66 levels)."""
    import dataclasses

    rng = np.random.default_rng(2)
    kept, lost = [], []
    for seed in range(1, 400):
        c, r, m, v, mouth = posed(seed, rng)
        if c.facial_hair not in ("moustache", "goatee"):
            continue
        centre, unit, shape, colours = world_rig(c, r)
        at, angle = mouth_place(centre, unit, shape, v)
        cx, cy = (int(q) for q in at[0, 0])
        if not (20 < cx < SIZE - 20 and 20 < cy < SIZE - 20):
            continue
        mouth[:4] = [0.9, 0.6, 0.1, 0.0]  # wide open: the drawn mouth reaches the moustache
        want = r.frame(m, mouth, 0).astype(np.float32)
        shaven = Renderer(dataclasses.replace(c, facial_hair="none"), SIZE, SIZE)
        bare = shaven.frame(m, world_clip.REST_MOUTH, 0)
        hair = np.abs(want - shaven.frame(m, mouth, 0)).max(-1) > 24  # the moustache's (goatee's) pixels
        picture = r.frame(neutral_motion(c), world_clip.REST_MOUTH, 0)
        as_input = [torch.from_numpy(a.astype(np.float32)).permute(2, 0, 1)[None] / 127.5 - 1 for a in (bare, picture)]
        for out, ref in ((kept, as_input[1]), (lost, None)):
            got = draw_mouth(as_input[0], at[0], angle[0], unit, shape, colours, torch.from_numpy(mouth)[None],
                             torch.tensor([float(m.smile[0])]), ref, None if ref is None else centre)  # fmt: skip
            out.append(float(np.abs(((got[0].permute(1, 2, 0) + 1) * 127.5).numpy()[hair] - want[hair]).mean()))
        if len(kept) == 12:
            break
    assert len(kept) >= 8, len(kept)
    assert np.mean(kept) < 0.6 * np.mean(lost), (np.mean(kept), np.mean(lost))


def talking_preset():
    p = load_preset(TINY)
    return dataclasses.replace(
        p,
        video=dataclasses.replace(p.video, width=SIZE, height=SIZE),
        model=dataclasses.replace(p.model, motion_inject=VIDEO_MOTION_DIM),
        vae=dataclasses.replace(p.vae, motion=VIDEO_MOTION_DIM, ref_decoder=True, mouth=True),
    )


def test_the_decoder_draws_the_mouth_the_motion_says_only_there_and_streams_exactly():
    """Random weights (the taps silent), the world's rig numbers: changing the mouth's numbers changes the frames
    at the mouth and nowhere far from it; the flag off draws as without the rig; streamed per latent equals whole."""
    clip = make_clip(split_seed(2000, "heldout"), 1.0, SIZE, SIZE, split="heldout")
    p = talking_preset()
    m = FlowActModel(p)
    m.init_random(0)
    m.eval()
    dec = m.vae.decoder
    with torch.no_grad():  # the motion reaches the frames by the drawn mouth alone (the taps draw nothing)
        for tap in dec.taps:
            tap.out.weight.zero_()
            tap.out.bias.zero_()
    ref = torch.from_numpy(clip.reference().copy()).float().div(127.5).sub(1).permute(2, 0, 1)[:, None][None]
    z = torch.randn(1, p.vae.latent_channels, 4, SIZE // 8, SIZE // 8, generator=torch.Generator().manual_seed(1))
    zref = m.vae.encode(ref)
    motion = torch.from_numpy(video_motion(clip)[1:17])[None]
    rig = world_rig(clip.character, clip.renderer)

    @torch.no_grad()
    def decode(pieces, planned=False):
        st = DecoderState()
        st.mouth_rig = rig
        m.vae.decode(zref, st, reference=ref)
        # planned: the mouth's layers worked out before the decode (a stream does it beside the video model)
        plans = [dec.plan(st, mo, zp.dtype) if planned else None for zp, _, mo in pieces]
        return torch.cat([m.vae.decode(zp, st, motion=mo, plan=pl) for (zp, _, mo), pl in zip(pieces, plans)], 2)

    dec.mouth_drawn.fill_(0)
    plain = decode([(z, None, motion)])
    dec.mouth_drawn.fill_(1)
    whole = decode([(z, None, motion)])
    assert torch.allclose(whole, decode(StreamGenerator.split_latents(z, None, motion)), atol=1e-5)
    assert torch.equal(whole, decode([(z, None, motion)], planned=True))
    wide = motion.clone()
    wide[..., MOUTH] = torch.tensor([0.9, 0.8, 0.0, 0.0, 0.0]) - torch.tensor(REST_MOUTH)  # wide open
    opened = decode([(z, None, wide)])
    change = (opened - whole).abs().amax(1)[0]  # (frames, H, W)
    at, _ = mouth_place(*rig[:3], wide)
    yy, xx = torch.meshgrid(torch.arange(SIZE) + 0.5, torch.arange(SIZE) + 0.5, indexing="ij")
    far = torch.stack([torch.hypot(xx - at[0, i, 0], yy - at[0, i, 1]) > 0.09 * rig[1][0] + 2 for i in range(16)])
    assert float(change[~far].amax()) > 0.5  # the open mouth's dark inside, where the lips were
    assert float(change[far].amax()) == 0.0
    assert float((whole - plain).abs().amax(1)[0][far].amax()) == 0.0


def test_the_drawn_mouth_needs_the_motion(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(open(TINY).read().replace("vae: {", "vae: {mouth: true, "))
    with pytest.raises(FlowactError, match="vae.mouth"):
        load_preset(path)


def test_the_shipped_rig_finds_held_out_mouths():
    """The toon-128 mouth rig on held-out characters' reference pictures: the mouth's centre within 1 px, the
    scale within 4 px, the colours within 16 levels on average."""
    from flowact import weights as W

    p = load_preset("toon-128")
    if not p.vae.mouth:
        pytest.fail("toon-128 ships without the mouth's rig")
    m = FlowActModel(p)
    W.load_into(m, W.resolve(p))
    assert float(m.vae.decoder.mouth_drawn) == 1.0
    errs, colour = [], []
    for k in range(6):
        clip = make_clip(split_seed(3000 + 16 * k, "heldout"), 1.0, SIZE, SIZE, split="heldout")
        ref = torch.from_numpy(clip.reference().copy()).float().div(127.5).sub(1).permute(2, 0, 1)[None]
        with torch.no_grad():
            centre, unit, _, colours = m.vae.decoder.mouth_rig(ref)
        t_centre, t_unit, _, t_colours = world_rig(clip.character, clip.renderer)
        errs.append(float((centre - t_centre).norm()))
        colour.append(float((colours - t_colours).abs().mean()) * 127.5)
        assert abs(float(unit[0] - t_unit[0])) < 4.0
    assert np.mean(errs) < 1.0 and np.mean(colour) < 16, (errs, colour)
