"""The arms drawn where the motion puts them (model/arms.py): the reference's own arms cut and moved by
the motion, on the world's geometry, exact when streamed, nothing changed for arms at rest, and the
shipped rig finding held-out characters' arms."""

import dataclasses
import threading

import numpy as np
import pytest
import torch

from flowact.config import load_preset
from flowact.errors import FlowactError
from flowact.model import FlowActModel
from flowact.model.arms import ARMS, BESIDE, BODY, arm_beside, arm_composite, arm_joints, arm_rest
from flowact.model.vae import DecoderState
from flowact.stream.generator import StreamGenerator
from flowact.world.behaviour import neutral_motion
from flowact.world.clip import make_clip, split_seed
from flowact.world.motion_vector import ARM_KEYS, MOTION_KEYS, VIDEO_MOTION_DIM, video_motion
from helpers import TINY

SIZE = 128


def world_rig(clip) -> tuple[torch.Tensor, torch.Tensor]:
    """A world clip's arms at rest (1, 2, 3, 2) px and pixels per character unit (1,): the rig's truth."""
    px = clip.renderer.to_pixel_xy(neutral_motion(clip.character).joints)[0]
    return torch.tensor(px, dtype=torch.float32)[None], torch.tensor([clip.character.scale * SIZE])


def gesture_clip():
    """A held-out clip whose arms move (waving, pointing, shrugging...): its frames and motion."""
    for k in range(8):
        clip = make_clip(split_seed(2000 + 16 * k, "heldout"), 4.0, SIZE, SIZE, split="heldout")
        mo = video_motion(clip)
        if np.abs(mo[:, ARMS]).max() > 0.3:
            return clip, mo
    raise AssertionError("no held-out clip with a gesture in 8")


def test_the_layout_is_the_worlds():
    assert MOTION_KEYS[BODY] == ("body_sway", "body_breath", "body_shrug")
    assert ARMS.start == len(MOTION_KEYS) and ARMS.stop - ARMS.start == len(ARM_KEYS) == 8
    assert ARM_KEYS[:4] == ("left_elbow_x", "left_elbow_y", "left_wrist_x", "left_wrist_y")


def test_the_joints_follow_the_worlds_and_the_cut_arms_are_its_pixels():
    """From the world's rest pose and a clip's motion, each frame's joints land on the world's own (within
    a pixel), and the reference's arms cut and moved to a gesture look like the frame's arms."""
    clip, mo = gesture_clip()
    rest, unit = world_rig(clip)
    joints = arm_joints(rest, unit, torch.from_numpy(mo)[None])[0].numpy()
    truth = clip.renderer.to_pixel_xy(clip.motion.joints)
    assert np.abs(joints - truth).max() < 1.0, np.abs(joints - truth).max()
    i = int(np.abs(mo[:, ARMS]).max(1).argmax())  # the frame furthest from rest
    ref = torch.from_numpy(clip.reference().copy()).float().div(127.5).sub(1).permute(2, 0, 1)[None]
    idx, cut, now, gone, fill = arm_composite(ref, rest, unit, torch.from_numpy(mo[i : i + 1])[None])
    assert idx.tolist() == [0] and float(gone.sum()) > 20 and float(now.sum()) > 100
    frame = torch.from_numpy(clip.render(i).copy()).float().div(127.5).sub(1).permute(2, 0, 1)
    inside = now[0, 0] > 0.99
    moved_err = float((cut[0] - frame).abs().mean(0)[inside].mean())
    ref_err = float((ref[0] - frame).abs().mean(0)[inside].mean())  # the resting picture there
    assert moved_err < 0.5 * ref_err, (moved_err, ref_err)
    assert moved_err < 0.12, moved_err  # in [-1, 1]: 15 levels of 255 on average (outlines, the hand's shape)


def drawing():
    p = load_preset(TINY)
    return dataclasses.replace(
        p,
        video=dataclasses.replace(p.video, width=SIZE, height=SIZE),
        model=dataclasses.replace(p.model, motion_inject=VIDEO_MOTION_DIM),
        vae=dataclasses.replace(p.vae, motion=VIDEO_MOTION_DIM, ref_decoder=True, arms=True),
    )


def test_the_decoder_draws_the_moved_arms_and_nothing_else_at_rest():
    """Random weights: frames whose arms rest draw bit for bit as a decoder without the arms; a raised
    arm is drawn from the reference's pixels at its new place; streamed per latent equals whole."""
    clip, mo = gesture_clip()
    p = drawing()
    m = FlowActModel(p)
    m.init_random(0)
    m.eval()
    ref = torch.from_numpy(clip.reference().copy()).float().div(127.5).sub(1).permute(2, 0, 1)[:, None][None]
    g = torch.Generator().manual_seed(1)
    z = torch.randn(1, p.vae.latent_channels, 4, SIZE // 8, SIZE // 8, generator=g)
    zref = m.vae.encode(ref)
    i = int(np.abs(mo[:, ARMS]).max(1).argmax())
    motion = torch.zeros(1, 16, VIDEO_MOTION_DIM)
    motion[:, 8:] = torch.from_numpy(mo[i])  # the second half of the frames: the gesture
    rest, unit = world_rig(clip)

    @torch.no_grad()
    def decode(pieces, arms=True, planned=False):
        st = DecoderState()
        st.arms = (rest, unit)
        dec = m.vae.decoder
        keep = dec.arms
        dec.arms = dec.arms if arms else None
        try:
            m.vae.decode(zref, st, reference=ref)
            out = []
            for zp, _, mo in pieces:
                plan = []  # planned: worked out on another thread first, as a stream does beside the video model
                if planned:
                    worker = threading.Thread(target=lambda: plan.append(dec.plan(st, mo, zp.dtype)))
                    worker.start()
                    worker.join()
                out.append(m.vae.decode(zp, st, motion=mo, plan=plan[0] if plan else None))
            return torch.cat(out, dim=2)
        finally:
            dec.arms = keep

    whole = decode([(z, None, motion)])
    plain = decode([(z, None, motion)], arms=False)
    assert torch.equal(whole[:, :, :8], plain[:, :, :8])  # at rest: as without the arms
    assert torch.allclose(whole, decode(StreamGenerator.split_latents(z, None, motion)), atol=1e-5)
    assert torch.equal(whole, decode([(z, None, motion)], planned=True))  # planned before, on another thread
    st = DecoderState()
    m.vae.decode(zref, st, reference=ref)
    with pytest.raises(ValueError, match="a draw plan for 8 frames given to a decode of 16"):
        m.vae.decode(z, st, motion=motion, plan=m.vae.decoder.plan(st, motion[:, :8], z.dtype))
    _, cut, now, gone, _ = arm_composite(ref[:, :, 0], rest, unit, motion[:, 8:9])
    inside = now[0, 0] == 1
    assert int(inside.sum()) > 100
    assert torch.allclose(whole[0, :, 8][:, inside], cut[0][:, inside], atol=1e-4)  # the moved arm, the reference's
    assert float((whole[0, :, 8] - plain[0, :, 8]).abs().amax(0)[inside].mean()) > 0.05
    # just beside where the resting arm was (neither arm there now): the reference's pixels, not the latents' smudge
    near_rest = (arm_beside(gone)[0, 0] == 1) & (now[0, 0] == 0) & (gone[0, 0] == 0)
    assert int(near_rest.sum()) > 50
    assert torch.allclose(whole[0, :, 8][:, near_rest], ref[0, :, 0][:, near_rest], atol=1e-4)
    assert float((plain[0, :, 8] - ref[0, :, 0]).abs().amax(0)[near_rest].mean()) > 0.05  # which the latents are not


def test_beside_a_moved_arm_is_a_band_of_its_own_width():
    """The band where the decoder draws the reference beside a moved arm: as wide as BESIDE of the frame's height
    on every side, nothing on the arm itself or further away, a soft edge kept soft."""
    now = torch.zeros(2, 1, SIZE, SIZE)
    now[0, :, 60:100, 30:40] = 1.0
    now[0, :, 60:100, 40] = 0.5  # the arm's soft edge
    band = arm_beside(now)
    r = round(BESIDE * SIZE)
    assert float(band[1].abs().max()) == 0.0  # a frame without a moved arm
    assert float(band[0, 0, 60:100, 30:40].max()) == 0.0  # on the arm
    assert float(band[0, 0, 60:100, 40].min()) == 0.5  # beside the full arm, over its half-covered edge
    assert float(band[0, 0, 80, 30 - r]) == 1.0 and float(band[0, 0, 80, 30 - r - 1]) == 0.0
    assert float(band[0, 0, 60 - r, 35]) == 1.0 and float(band[0, 0, 60 - r - 1, 35]) == 0.0
    assert float(band[0, 0, 80, 39 + r]) == 1.0 and float(band[0, 0, 80, 40 + r]) == 0.5  # the edge's reach


def test_arms_need_the_motion_with_arms(tmp_path):
    path = tmp_path / "p.yaml"
    text = open(TINY).read()
    path.write_text(text.replace("vae: {", "vae: {arms: true, "))
    with pytest.raises(FlowactError, match="vae.arms"):
        load_preset(path)


def test_the_shipped_rig_finds_held_out_arms():
    """The toon-128 rig on held-out characters' reference pictures: joints within 1.5 px on average."""
    from flowact import weights as W

    p = load_preset("toon-128")
    if not p.vae.arms:
        pytest.fail("toon-128 ships without the arms' rig")
    m = FlowActModel(p)
    W.load_into(m, W.resolve(p))
    errs = []
    for k in range(6):
        clip = make_clip(split_seed(3000 + 16 * k, "heldout"), 1.0, SIZE, SIZE, split="heldout")
        ref = torch.from_numpy(clip.reference().copy()).float().div(127.5).sub(1).permute(2, 0, 1)[None]
        with torch.no_grad():
            joints, unit = m.vae.decoder.arms(ref)
        rest, true_unit = world_rig(clip)
        errs.append(float((joints - rest).norm(dim=-1).mean()))
        assert abs(float(unit[0] - true_unit[0])) < 4.0
    assert np.mean(errs) < 1.5, errs


def test_the_arm_filter_is_causal_and_chunk_free_and_calms_a_shaking_arm():
    """Fed in chunks it gives what it gives fed at once; frames never depend on later ones; a resting arm
    with sampling noise shakes less than a fifth as much after it, a steady swing keeps most of its size."""
    from flowact.stream.motion import ArmFilter

    rng = np.random.default_rng(0)
    t = np.arange(200) / 25
    swing = np.stack([0.3 * np.sin(2 * np.pi * 1.5 * t)] * 8, 1).astype(np.float32)
    noisy = swing + rng.normal(0, 0.05, swing.shape).astype(np.float32)
    once = ArmFilter(8)(noisy)
    f = ArmFilter(8)
    chunks = np.concatenate([f(noisy[i : i + 8]) for i in range(0, 200, 8)])
    assert np.allclose(once, chunks)
    assert np.allclose(ArmFilter(8)(noisy[:50]), once[:50])
    rest = rng.normal(0, 0.05, (200, 8)).astype(np.float32)
    calm = ArmFilter(8)(rest)
    assert np.abs(np.diff(calm[20:], axis=0)).mean() < 0.2 * np.abs(np.diff(rest[20:], axis=0)).mean()
    out = ArmFilter(8)(swing)
    assert out[50:].std() > 0.7 * swing[50:].std()


def test_an_arms_engine_remakes_a_chunk_from_its_snapshot():
    """The arms' filter is part of the stream's state: a chunk made again from the snapshot before it (as a
    live session does when speech arrives) is the same chunk."""
    from flowact.model.motion import MotionConfig, MotionDiT
    from flowact.stream.motion import MotionEngine, MotionStream
    from flowact.world.motion_vector import neutral_vector

    torch.manual_seed(0)
    engine = MotionEngine(MotionDiT(MotionConfig(arms=8)).eval().requires_grad_(False))
    stream = MotionStream(engine, neutral_vector(), seed=1)
    rng = np.random.default_rng(1)
    audio = [rng.normal(0, 0.1, np.subtract(*stream.audio_span(i)[::-1])).astype(np.float32) for i in range(3)]
    stream.chunk(0, audio[0])
    snap = stream.snapshot()
    first = stream.chunk(1, audio[1])
    stream.chunk(2, audio[2])
    stream.restore(snap)
    assert np.array_equal(stream.chunk(1, audio[1]), first)


def test_where_a_lowered_arm_was_the_reference_is_drawn_for_a_while():
    """Random weights (the latents draw noise everywhere): an arm raised, then lowered, leaves the reference's pixels
    where it was (outside the head's box) in the frames after, not the latents' ghost of it; without the head's
    place (no mouth rig) the decoder keeps no trail and draws the latents there."""
    from test_mouth import world_rig as mouth_rig

    clip, mo = gesture_clip()
    m = FlowActModel(drawing())
    m.init_random(0)
    m.eval()
    ref = torch.from_numpy(clip.reference().copy()).float().div(127.5).sub(1).permute(2, 0, 1)[:, None][None]
    g = torch.Generator().manual_seed(1)
    z = torch.randn(1, m.preset.vae.latent_channels, 4, SIZE // 8, SIZE // 8, generator=g)
    zref = m.vae.encode(ref)
    motion = torch.zeros(1, 16, VIDEO_MOTION_DIM)
    motion[:, :8] = torch.from_numpy(mo[int(np.abs(mo[:, ARMS]).max(1).argmax())])  # raised, then at rest
    rest, unit = world_rig(clip)
    head_rig = mouth_rig(clip.character, clip.renderer)

    @torch.no_grad()
    def decode(head: bool):
        st = DecoderState()
        st.arms, st.mouth_rig = (rest, unit), head_rig if head else None
        m.vae.decode(zref, st, reference=ref)
        return m.vae.decode(z, st, motion=motion)[0]

    trail, plain = decode(True), decode(False)
    _, _, now, _, _ = arm_composite(ref[:, :, 0], rest, unit, motion[:, 7:8])
    where0, _ = arm_rest(ref[:, :, 0], rest, unit)
    centre, u, shape, _ = head_rig
    ys, xs = torch.meshgrid(torch.arange(SIZE) + 0.5, torch.arange(SIZE) + 0.5, indexing="ij")
    head = ((xs - centre[0, 0]).abs() <= 1.3 * shape[0, 1] * u[0]) & (ys <= centre[0, 1] + 0.5 * shape[0, 2] * u[0])
    was = (now[0, 0] == 1) & (where0[0, 0] == 0) & ~head  # the raised arm's place, off the resting arm and the head
    assert int(was.sum()) > 50
    for f in (8, 10):  # the first frames at rest again: the reference there (the background, the body)
        assert torch.allclose(trail[:, f][:, was], ref[0, :, 0][:, was], atol=1e-4)
        assert float((plain[:, f] - ref[0, :, 0]).abs().amax(0)[was].mean()) > 0.05  # the latents' own drawing
