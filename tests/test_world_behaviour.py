"""Behaviour timelines: states with prompts, smooth cross-fades, real arm kinematics, blinks."""

import numpy as np

from flowact.world.behaviour import (
    PROMPTS,
    STATES,
    Segment,
    perform,
    sample_timeline,
    segment_weights,
    solve_arm,
    state_from_prompt,
)
from flowact.world.character import sample_character


def test_every_prompt_names_its_state():
    for state, prompts in PROMPTS.items():
        for p in prompts:
            assert state_from_prompt(p) == state, p
    assert state_from_prompt("please wave at the audience") == "waving"
    assert state_from_prompt("blue sky") is None


def test_timelines_cover_the_clip_and_vary():
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(60):
        segs = sample_timeline(rng, 8.0, lambda: 1.5)
        assert segs[0].start == 0 and segs[-1].end >= 8.0
        assert all(a.end == b.start and a.state != b.state for a, b in zip(segs, segs[1:]))
        assert all(s.state in STATES and s.prompt in PROMPTS[s.state] for s in segs)
        seen.update(s.state for s in segs)
    assert seen == set(STATES)


def test_crossfades_are_smooth_and_normalised():
    segs = [Segment(0, 2, "idle", "", 1), Segment(2, 4, "waving", "", 1), Segment(4, 6, "pointing", "", -1)]
    t = np.arange(150) / 25
    w = segment_weights(segs, t)
    assert np.allclose(w.sum(1), 1)
    assert np.abs(np.diff(w, axis=0)).max() < 0.2  # onsets and offsets take several frames
    m = perform(sample_character(1), segs, 150, np.random.default_rng(0))
    wrist = m.joints[:, :, 2]
    assert np.abs(np.diff(wrist, axis=0)).max() < 0.06  # no teleporting hands
    assert list(np.unique(m.state)) == [STATES.index(s) for s in ("idle", "waving", "pointing")]


def test_arm_ik_keeps_bone_lengths_and_reaches():
    shoulder = np.zeros((4, 2))
    target = np.array([[0.2, 0.1], [0.1, -0.2], [0.0, 0.3], [0.9, 0.0]])
    elbow, wrist = solve_arm(shoulder, target, 0.18, 0.16, side=1)
    assert np.allclose(np.linalg.norm(elbow - shoulder, axis=1), 0.18)
    assert np.allclose(np.linalg.norm(wrist - elbow, axis=1), 0.16)
    assert np.allclose(wrist[:3], target[:3], atol=1e-6)  # reachable targets are reached
    assert np.linalg.norm(wrist[3]) < 0.34  # unreachable: arm straight towards it


def test_gestures_move_the_body_as_described():
    c = sample_character(4)
    rng = np.random.default_rng(2)

    def run(state, side=1):
        return perform(c, [Segment(-1, 10, state, state, side)], 100, rng)

    wave = run("waving")
    shoulder, wrist = wave.joints[50, 1, 0], wave.joints[50, 1, 2]
    assert wrist[1] < shoulder[1] - 0.1  # hand raised above the shoulder
    assert np.ptp(wave.joints[25:75, 1, 2, 0]) > 0.05  # and waving side to side
    think = run("thinking")
    assert abs(think.joints[50, 1, 2, 0]) < 0.08 and think.gaze[50, 1] < -0.5  # hand at chin, looking up
    nod = run("nodding")
    assert np.ptp(nod.head[:, 1]) > 0.8
    tilt = run("head_tilt", -1)
    assert tilt.head[50, 2] < -0.4
    idle = run("idle")
    assert np.ptp(idle.head[:, 1]) < 0.4 and idle.blink.max() > 0.9  # small motion, blinks always
    speak = perform(c, [Segment(-1, 10, "speaking", "talk", 1)], 250, rng)
    assert (speak.blink > 0.9).sum() >= 2
