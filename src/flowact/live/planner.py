"""Behaviour planner: which state (and text prompt) each chunk is generated with.

`Planner` is the interface: `update(observation) -> Plan`, called once per chunk just before
it is generated. `RulePlanner` is the default and needs no extra model:

- a commanded state or prompt (state/prompt commands) wins while it holds;
- the character's own speech is voiced in this chunk (silero VAD)        -> speaking
  (louder-than-usual stretches -> "explaining something", else "talking to the camera");
- the user's channel carries voice (VAD), or `listen active`             -> listening
  (a loud burst in the user's voice -> a short nod, "nodding along");
- a short pause before speech (speech queued or a streamed utterance
  still arriving but silent now), or just after the user stopped          -> thinking
- otherwise (long silence)                                                -> idle.

States hold at least `min_hold` seconds (no flicker), except that speech starting switches to
speaking at once. An external planner (an LLM process) can drive the same session through the
JSON-lines protocol with `--planner none`, or a Python one through `LiveSession(planner=...)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from ..world.behaviour import PROMPTS

WINDOW = 512  # silero VAD window at 16 kHz
VOICED = 0.5  # silero probability above which a window is speech


class Vad:
    """silero-vad over a stream: feed any number of samples, get the voiced fraction of the
    whole 512-sample windows completed (leftover samples wait for the next call)."""

    def __init__(self):
        from silero_vad import load_silero_vad

        self.model = load_silero_vad()
        self._rest = np.zeros(0, np.float32)

    def reset(self) -> None:
        self.model.reset_states()
        self._rest = np.zeros(0, np.float32)

    def warm_up(self) -> None:
        """The TorchScript model optimises itself over its first calls: pay that before the clock starts."""
        rng = np.random.default_rng(0)
        for _ in range(4):
            self.voiced(rng.standard_normal(WINDOW * 2).astype(np.float32) * 0.1)
        self.reset()

    @torch.no_grad()
    def voiced(self, samples: np.ndarray) -> float:
        x = np.concatenate([self._rest, samples])
        n = len(x) // WINDOW
        self._rest = x[n * WINDOW :]
        if n == 0:
            return 0.0
        if not np.any(x[: n * WINDOW]):  # digital silence: no need to ask the network
            return 0.0
        probs = [float(self.model(torch.from_numpy(x[i * WINDOW : (i + 1) * WINDOW].copy()), 16000)) for i in range(n)]
        return float(np.mean(np.array(probs) > VOICED))


@dataclass(frozen=True)
class Observation:
    """What the planner sees before chunk `index` (stream time `t` seconds)."""

    index: int
    t: float
    chunk_seconds: float
    speech_voiced: float  # fraction of this chunk's own-speech windows that are voiced (0..1), VAD or loud
    speech_rms: float  # RMS of this chunk's own speech
    speech_pending: float  # seconds of own speech queued after this chunk
    utterance_open: bool  # a streamed utterance is still arriving
    user_voiced: float  # fraction of the user's audio heard since the last chunk that is voiced
    user_rms: float
    user_active: bool | None  # explicit `listen active` flag (None: not given)
    commanded_state: str | None  # an explicit state holding now (None: auto)
    commanded_prompt: str | None


@dataclass(frozen=True)
class Plan:
    state: str
    prompt: str
    by: str = "planner"  # planner | command


class Planner(Protocol):
    def update(self, obs: Observation) -> Plan: ...


def default_prompt(state: str) -> str:
    return PROMPTS[state][0] if state in PROMPTS else state


class RulePlanner:
    def __init__(
        self,
        min_hold: float = 0.9,
        speech_hangover: float = 0.5,
        user_hangover: float = 0.7,
        think_after_user: float = 2.5,
        nod_seconds: float = 1.2,
        nod_cooldown: float = 4.0,
        idle_cycle: float = 8.0,
    ):
        self.min_hold, self.speech_hangover, self.user_hangover = min_hold, speech_hangover, user_hangover
        self.think_after_user, self.nod_seconds, self.nod_cooldown = think_after_user, nod_seconds, nod_cooldown
        self.idle_cycle = idle_cycle
        self.state, self.prompt, self.since = "idle", default_prompt("idle"), -1e9
        self.last_speech = self.last_user = self.last_nod = -1e9
        self.speech_level = self.user_level = 0.0  # running RMS of voiced chunks (emphasis reference)
        self.nod_until = -1e9
        self.emphatic_until = -1e9

    def update(self, obs: Observation) -> Plan:
        t = obs.t
        if obs.commanded_state is not None or obs.commanded_prompt is not None:
            state = obs.commanded_state or "idle"
            prompt = obs.commanded_prompt or default_prompt(state)
            self.state, self.prompt, self.since = state, prompt, t
            return Plan(state, prompt, "command")

        speaking_now = obs.speech_voiced >= 0.2
        if speaking_now:
            self.last_speech = t
            if self.speech_level and obs.speech_rms > 1.4 * self.speech_level:
                self.emphatic_until = t + 1.0
            self.speech_level = (
                obs.speech_rms if not self.speech_level else 0.8 * self.speech_level + 0.2 * obs.speech_rms
            )
        user_now = obs.user_voiced >= 0.2 or bool(obs.user_active)
        if user_now:
            if (
                obs.user_rms
                and self.user_level
                and obs.user_rms > 1.8 * self.user_level
                and t - self.last_nod > self.nod_cooldown
            ):
                self.nod_until, self.last_nod = t + self.nod_seconds, t
            if obs.user_rms:
                self.user_level = obs.user_rms if not self.user_level else 0.85 * self.user_level + 0.15 * obs.user_rms
            self.last_user = t
        more_speech = obs.speech_pending > 0 or obs.utterance_open

        if speaking_now or (t - self.last_speech < self.speech_hangover and more_speech):
            state = "speaking"
            prompt = "explaining something" if t < self.emphatic_until else default_prompt("speaking")
        elif user_now or t - self.last_user < self.user_hangover:
            state = "nodding" if t < self.nod_until else "listening"
            prompt = "nodding along" if state == "nodding" else default_prompt("listening")
        elif more_speech or t - self.last_user < self.think_after_user:
            state, prompt = "thinking", default_prompt("thinking")
        else:
            state = "idle"
            quiet = t - max(self.last_speech, self.last_user, 0.0)
            # long silences drift between idle variations rather than freezing on one
            prompt = PROMPTS["idle"][int(quiet // self.idle_cycle) % len(PROMPTS["idle"])]

        # activity starting (speech, the user's voice) switches at once; its absence must last
        # `min_hold` before the state falls back (a breath is not the end of a turn)
        if state != self.state and state in ("idle", "thinking") and t - self.since < self.min_hold:
            return Plan(self.state, self.prompt)
        if state != self.state:
            self.since = t
        elif prompt != self.prompt and t - self.since < self.min_hold:
            prompt = self.prompt
        self.state, self.prompt = state, prompt
        return Plan(state, prompt)


class NullPlanner:
    """No automatic behaviour: idle unless a command (e.g. from an external planner) says otherwise."""

    def update(self, obs: Observation) -> Plan:
        if obs.commanded_state is not None or obs.commanded_prompt is not None:
            state = obs.commanded_state or "idle"
            return Plan(state, obs.commanded_prompt or default_prompt(state), "command")
        return Plan("idle", default_prompt("idle"))
