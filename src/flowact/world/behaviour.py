"""Behaviour: scripted timelines of states and gestures, and the per-frame body motion they produce.

A timeline is a list of segments, one state each, with a text prompt. Each state is a
motion recipe (head, gaze, brows, wrist targets, hand shapes) in local time; consecutive
segments cross-fade over `TRANSITION` seconds with a smoothstep, so a wave rises and falls
instead of popping. Breathing, sway, small head motion, saccades and blinks run under every
state. Arms follow their wrist targets through two-link inverse kinematics, so the labels
carry real joint positions (shoulder, elbow, wrist) for every frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .character import Character
from . import FPS

STATES = ("idle", "speaking", "listening", "thinking", "waving", "nodding", "pointing", "shrugging", "head_tilt")
PROMPTS = {
    "idle": ["standing still, relaxed", "idle, breathing calmly", "waiting quietly", "resting, looking around"],
    "speaking": [
        "talking to the camera",
        "speaking calmly",
        "explaining something",
        "telling a story",
        "saying hello and chatting",
    ],
    "listening": [
        "listening attentively",
        "listening and nodding slightly",
        "paying attention to someone",
        "quietly listening",
    ],
    "thinking": [
        "thinking, hand on chin",
        "pondering a question",
        "looking up, deep in thought",
        "considering the answer",
    ],
    "waving": ["waving hello", "waving goodbye", "raising a hand to wave", "greeting with a wave"],
    "nodding": ["nodding in agreement", "nodding yes", "nodding along"],
    "pointing": ["pointing to the side", "pointing at something", "showing the way with a finger"],
    "shrugging": ["shrugging, not sure", "shrugging the shoulders", "a puzzled shrug"],
    "head_tilt": ["tilting the head curiously", "head tilted to one side", "a curious head tilt"],
}
# words that identify a state in a free-text prompt (used to read user timelines)
STATE_KEYWORDS = {
    "speaking": ("speak", "talk", "say", "explain", "tell", "chat"),
    "listening": ("listen", "attention"),
    "thinking": ("think", "ponder", "consider", "thought"),
    "waving": ("wave", "waving", "greet"),
    "nodding": ("nod",),
    "pointing": ("point", "finger"),
    "shrugging": ("shrug",),
    "head_tilt": ("tilt",),
    "idle": ("idle", "still", "rest", "wait", "calm"),
}
_NEXT_WEIGHTS = {
    "speaking": 0.34,
    "listening": 0.1,
    "idle": 0.08,
    "thinking": 0.08,
    "waving": 0.08,
    "nodding": 0.08,
    "pointing": 0.08,
    "shrugging": 0.08,
    "head_tilt": 0.08,
}
TRANSITION = 0.6  # seconds of cross-fade between segments

# body layout in character units (frame height = 1, x from the centre line)
HEAD_Y = 0.33
SHOULDER_Y = 0.6


def state_from_prompt(text: str) -> str | None:
    """The state a prompt names, by keyword; None if it names none."""
    low = text.lower().replace("_", " ")
    for state in STATES:
        if state.replace("_", " ") in low:
            return state
    for state, words in STATE_KEYWORDS.items():
        if any(w in low for w in words):
            return state
    return None


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    state: str
    prompt: str
    side: int  # +1 / -1: which arm or direction a one-sided gesture uses

    def as_dict(self) -> dict:
        return {"start": round(self.start, 3), "end": round(self.end, 3), "state": self.state, "prompt": self.prompt}


def sample_timeline(
    rng: np.random.Generator, seconds: float, speech_seconds=None, first: str | None = None
) -> list[Segment]:
    """Random segments covering [0, seconds]. `speech_seconds()` gives the length of the next utterance."""
    segs: list[Segment] = []
    t = 0.0
    prev = None
    states = list(_NEXT_WEIGHTS)
    weights = np.array([_NEXT_WEIGHTS[s] for s in states])
    while t < seconds - 1e-6:
        if first is not None and not segs:
            state = first
        else:
            p = np.where(np.array(states) == prev, 0.0, weights)
            state = str(rng.choice(states, p=p / p.sum()))
        if state == "speaking" and speech_seconds is not None:
            dur = float(speech_seconds()) + 0.25
        elif state in ("idle", "listening", "thinking"):
            dur = float(rng.uniform(1.2, 2.6))
        else:
            dur = float(rng.uniform(1.2, 2.2))
        segs.append(Segment(t, t + dur, state, str(rng.choice(PROMPTS[state])), int(rng.choice([-1, 1]))))
        prev, t = state, t + dur
    return segs


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0, 1)
    return x * x * (3 - 2 * x)


def segment_weights(segments: list[Segment], t: np.ndarray) -> np.ndarray:
    """(frames, segments) cross-fade weights summing to 1 per frame."""
    w = np.zeros((len(t), len(segments)))
    for i, s in enumerate(segments):
        rise = np.ones_like(t) if i == 0 else _smoothstep((t - (s.start - TRANSITION / 2)) / TRANSITION)
        fall = (
            np.ones_like(t) if i == len(segments) - 1 else 1 - _smoothstep((t - (s.end - TRANSITION / 2)) / TRANSITION)
        )
        w[:, i] = rise * fall
    return w / np.maximum(w.sum(axis=1, keepdims=True), 1e-9)


def _noise(rng: np.random.Generator, t: np.ndarray, freqs=(0.13, 0.29, 0.51)) -> np.ndarray:
    """Smooth pseudo-random motion in about [-1, 1]."""
    out = np.zeros_like(t)
    for f in freqs:
        f = f * rng.uniform(0.8, 1.25)
        out += np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    return out / len(freqs)


def _blinks(rng: np.random.Generator, t: np.ndarray, rate: float) -> np.ndarray:
    closure = np.zeros_like(t)
    at = rng.uniform(0.3, 1.5)
    while at < t[-1] + 1:
        closure = np.maximum(closure, np.clip(1 - np.abs(t - at) / 0.075, 0, 1))
        at += rng.exponential(1 / rate) + 0.5
    return np.clip(closure * 1.4, 0, 1)


def _saccades(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    gaze = np.zeros((len(t), 2))
    at, cur = 0.0, rng.uniform(-0.3, 0.3, 2)
    while at < t[-1] + 1:
        nxt = at + rng.uniform(0.6, 2.5)
        gaze[(t >= at) & (t < nxt)] = cur
        cur = rng.uniform(-0.4, 0.4, 2) * [1, 0.6]
        at = nxt
    return gaze


@dataclass(frozen=True)
class Motion:
    """Per-frame body state (all arrays have `frames` rows). Units: character units, see draw.py."""

    head: np.ndarray  # (frames, 3) yaw, pitch, roll in [-1, 1]
    gaze: np.ndarray  # (frames, 2) x, y in [-1, 1]
    blink: np.ndarray  # (frames,) eyelid closure 0..1
    brow: np.ndarray  # (frames,) raise -1..1
    smile: np.ndarray  # (frames,)
    body: np.ndarray  # (frames, 3) sway x, breathing lift, shoulder lift (shrug)
    joints: np.ndarray  # (frames, 2 arms [left, right], 3 [shoulder, elbow, wrist], 2 xy)
    hands: np.ndarray  # (frames, 2) per arm: 0 relaxed, 1 open palm, 2 pointing finger, 3 fist
    state: np.ndarray  # (frames,) int index into STATES (the dominant segment)
    state_weight: np.ndarray  # (frames,) weight of that segment in the blend


def solve_arm(
    shoulder: np.ndarray, target: np.ndarray, l1: float, l2: float, side: int
) -> tuple[np.ndarray, np.ndarray]:
    """Two-link IK, vectorised over frames: elbow and wrist for wrist targets (frames, 2)."""
    d = target - shoulder
    dist = np.linalg.norm(d, axis=1)
    dist_c = np.clip(dist, abs(l1 - l2) + 1e-3, l1 + l2 - 1e-3)
    unit = d / np.maximum(dist, 1e-9)[:, None]
    wrist = shoulder + unit * dist_c[:, None]
    a = np.arctan2(unit[:, 1], unit[:, 0])
    b = np.arccos(np.clip((l1**2 + dist_c**2 - l2**2) / (2 * l1 * dist_c), -1, 1))
    e1 = shoulder + l1 * np.stack([np.cos(a + b), np.sin(a + b)], 1)
    e2 = shoulder + l1 * np.stack([np.cos(a - b), np.sin(a - b)], 1)
    # elbows bend outward and downward, never across the chest
    score = lambda e: side * e[:, 0] + 0.7 * e[:, 1]  # noqa: E731
    elbow = np.where((score(e1) >= score(e2))[:, None], e1, e2)
    return elbow, wrist


def perform(
    character: Character,
    segments: list[Segment],
    frames: int,
    rng: np.random.Generator,
    fps: float = FPS,
    speaking_activity: np.ndarray | None = None,
) -> Motion:
    """Motion for `frames` frames of a timeline. `speaking_activity` (frames,) 0..1 drives head bobs."""
    c = character
    t = np.arange(frames) / fps
    w = segment_weights(segments, t)
    en = c.energy
    head = np.stack([0.12 * _noise(rng, t), 0.08 * _noise(rng, t), 0.06 * _noise(rng, t)], 1) * en
    gaze = _saccades(rng, t)
    brow = 0.1 * _noise(rng, t, (0.2, 0.4))
    smile = np.full(frames, c.smile)
    body = np.stack(
        [
            0.006 * en * _noise(rng, t, (0.08, 0.17)),
            0.004 * np.sin(2 * np.pi * rng.uniform(0.2, 0.3) * t + rng.uniform(0, 6.3)),
            np.zeros(frames),
        ],
        1,
    )
    sh = c.shoulder_half
    reach = c.upper_arm + c.forearm
    rest = np.array([[-(sh + 0.03), SHOULDER_Y + reach * 0.95], [sh + 0.03, SHOULDER_Y + reach * 0.95]])
    wrists = np.zeros((frames, 2, 2))
    hands = np.zeros((frames, 2))
    chin_y = HEAD_Y + c.head_ry * 0.92 + 0.015
    for i, s in enumerate(segments):
        wi = w[:, i]
        if not wi.any():
            continue
        tau = t - s.start
        k = 0 if s.side < 0 else 1  # which arm a one-sided gesture uses
        tgt = np.broadcast_to(rest, (frames, 2, 2)).copy()
        hd = np.zeros((frames, 3))
        gz = np.zeros((frames, 2))
        hand = np.zeros((frames, 2))
        br = np.zeros(frames)
        sm = np.zeros(frames)
        if s.state == "speaking":
            act = speaking_activity if speaking_activity is not None else np.ones(frames)
            hd += (
                np.stack(
                    [0.1 * _noise(rng, t, (0.6, 1.1)), 0.12 * _noise(rng, t, (0.9, 1.6)), 0.05 * _noise(rng, t)], 1
                )
                * act[:, None]
                * en
            )
            br += 0.35 * np.clip(_noise(rng, t, (0.5, 0.9)), 0, 1) * act
            beat = 0.025 * _noise(rng, t, (0.9, 1.4))
            tgt[:, :, 1] -= 0.05 + beat[:, None]
            tgt[:, :, 0] *= 0.85
        elif s.state == "listening":
            hd[:, 1] += 0.22 * np.clip(np.sin(2 * np.pi * 0.8 * tau), 0, 1) ** 2
            hd[:, 2] += 0.12 * s.side
            sm += 0.3
            gz -= gaze * 0.8  # looks at the speaker (the camera)
        elif s.state == "thinking":
            hd += [0.28 * s.side, -0.3, 0.08 * s.side]
            gz += np.array([0.6 * s.side, -0.85]) - gaze
            br += 0.5
            sm -= 0.4
            tgt[:, k] = [0.035 * s.side, chin_y]
            hand[:, k] = 3
        elif s.state == "waving":
            tgt[:, k] = np.stack(
                [s.side * (sh + 0.16 + 0.055 * np.sin(2 * np.pi * 2.3 * tau)), np.full(frames, HEAD_Y + 0.1)], 1
            )
            hand[:, k] = 1
            sm += 0.6
            br += 0.4
            hd[:, 2] += 0.08 * s.side
        elif s.state == "nodding":
            hd[:, 1] += 0.6 * np.sin(2 * np.pi * 1.9 * tau)
            sm += 0.3
        elif s.state == "pointing":
            tgt[:, k] = [s.side * (sh + 0.2), SHOULDER_Y - 0.03]
            hand[:, k] = 2
            hd[:, 0] += 0.35 * s.side
            gz += [0.8 * s.side, 0.0]
        elif s.state == "shrugging":
            tgt[:, 0] = [-(sh + 0.14), SHOULDER_Y + reach * 0.62]
            tgt[:, 1] = [sh + 0.14, SHOULDER_Y + reach * 0.62]
            hand[:] = 1
            hd[:, 2] += 0.18 * s.side
            br += 1.0
            sm -= 0.6
        elif s.state == "head_tilt":
            hd[:, 2] += 0.65 * s.side
            hd[:, 0] += 0.1 * s.side
            sm += 0.3
            br += 0.3
        body[:, 2] += wi * (0.035 if s.state == "shrugging" else 0.0)
        head += wi[:, None] * hd
        gaze = gaze + wi[:, None] * gz
        brow += wi * br
        smile += wi * sm
        wrists += wi[:, None, None] * tgt
        hands = np.where(wi[:, None] > 0.5, hand, hands)
    blink = _blinks(rng, t, c.blink_rate)
    joints = np.zeros((frames, 2, 3, 2))
    for k, side in enumerate((-1, 1)):
        shoulder = np.stack([side * sh + body[:, 0], SHOULDER_Y - body[:, 1] - body[:, 2]], 1)
        elbow, wrist = solve_arm(
            shoulder, wrists[:, k] + body[:, None, 0].repeat(2, 1) * [1, 0], c.upper_arm, c.forearm, side
        )
        joints[:, k] = np.stack([shoulder, elbow, wrist], 1)
    dominant = w.argmax(axis=1)
    state = np.array([STATES.index(segments[j].state) for j in dominant])
    return Motion(
        np.clip(head, -1, 1),
        np.clip(gaze, -1, 1),
        blink,
        np.clip(brow, -1, 1),
        np.clip(smile, -1, 1),
        body,
        joints,
        hands,
        state,
        w[np.arange(frames), dominant],
    )


def neutral_motion(character: Character) -> Motion:
    """One frame of the reference pose: facing the camera, arms down, eyes open, mouth at rest."""
    c = character
    sh, reach = c.shoulder_half, c.upper_arm + c.forearm
    joints = np.zeros((1, 2, 3, 2))
    for k, side in enumerate((-1, 1)):
        shoulder = np.array([[side * sh, SHOULDER_Y]])
        target = np.array([[side * (sh + 0.03), SHOULDER_Y + reach * 0.95]])
        elbow, wrist = solve_arm(shoulder, target, c.upper_arm, c.forearm, side)
        joints[:, k] = np.stack([shoulder, elbow, wrist], 1)
    z = np.zeros(1)
    return Motion(
        np.zeros((1, 3)),
        np.zeros((1, 2)),
        z,
        z,
        np.full(1, c.smile),
        np.zeros((1, 3)),
        joints,
        np.zeros((1, 2)),
        np.zeros(1, int),
        np.ones(1),
    )
