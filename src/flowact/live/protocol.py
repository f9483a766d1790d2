"""The live control protocol: one JSON object per line.

    {"cmd": "speak", "audio": "hello.wav"}                         say a file (queued after current speech)
    {"cmd": "speak", "audio": "hello.wav", "interrupt": true}      cut current speech, say this now
    {"cmd": "speak_pcm", "data": "<base64 s16le 16 kHz mono>", "final": false}   streamed speech
    {"cmd": "state", "state": "thinking"}                          force a state ("auto": back to the planner)
    {"cmd": "state", "state": "waving", "seconds": 2}              a gesture for 2 s, then auto
    {"cmd": "prompt", "text": "wave hello"}                        a free behaviour prompt ("" = auto)
    {"cmd": "listen", "active": true}                              the user is talking (external VAD)
    {"cmd": "listen", "audio": "user.wav"}                         the user's voice, heard from now on
    {"cmd": "listen_pcm", "data": "<base64 s16le 16 kHz mono>"}    the user's microphone, streamed
    {"cmd": "interrupt"}                                           stop speaking now
    {"cmd": "stop"}                                                end the stream (file finalised)

Any command may carry "id" (echoed in its events). A script file (--script) holds the same
objects with "at": seconds after the stream starts.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import FlowactError
from ..world.behaviour import STATES, state_from_prompt

KINDS = ("speak", "speak_pcm", "state", "prompt", "listen", "listen_pcm", "interrupt", "stop")
GESTURES = ("waving", "nodding", "pointing", "shrugging", "head_tilt")
GESTURE_SECONDS = 2.0  # a commanded gesture without "seconds" lasts this long, then the planner resumes
MAX_PCM_SECONDS = 60.0  # one speak_pcm / listen_pcm message


class ProtocolError(ValueError):
    """A control line that cannot be used; reported as an error event, the stream goes on."""


@dataclass
class Command:
    kind: str
    received: float = 0.0  # time.perf_counter() when the line arrived
    id: str | None = None
    line: int = 0  # 1-based line number in its source
    audio: str | None = None  # speak / listen: file path
    samples: np.ndarray | None = None  # speak / speak_pcm / listen / listen_pcm: 16 kHz float32 (filled on receipt)
    final: bool = True  # speak_pcm: last piece of this utterance
    interrupt: bool = False  # speak: replace current speech instead of queueing
    state: str | None = None  # state: a name from world.behaviour.STATES, or "auto"
    prompt: str | None = None  # prompt: free text
    seconds: float | None = None  # state / prompt: how long it holds (None: until changed)
    active: bool | None = None  # listen: explicit user activity flag
    extra: dict = field(default_factory=dict)

    def describe(self) -> dict:
        d = {"cmd": self.kind}
        if self.id is not None:
            d["id"] = self.id
        for k in ("audio", "state", "prompt", "seconds", "active"):
            v = getattr(self, k)
            if v is not None:
                d[k] = v
        if self.kind == "speak_pcm":
            d["final"] = self.final
        if self.samples is not None and self.kind.endswith("_pcm"):
            d["samples"] = int(len(self.samples))
        return d


def _pcm(obj: dict) -> np.ndarray:
    data = obj.get("data")
    if not isinstance(data, str):
        raise ProtocolError(f"{obj['cmd']} needs 'data': base64 of s16le 16 kHz mono PCM")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError(f"{obj['cmd']}: 'data' is not valid base64 ({exc})") from exc
    if len(raw) % 2:
        raise ProtocolError(f"{obj['cmd']}: 'data' has an odd number of bytes (s16le needs 2 per sample)")
    if len(raw) / 2 / 16000 > MAX_PCM_SECONDS:
        raise ProtocolError(f"{obj['cmd']}: more than {MAX_PCM_SECONDS:.0f} s in one message; send smaller pieces")
    return np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0


def _seconds(obj: dict) -> float | None:
    s = obj.get("seconds")
    if s is None:
        return None
    if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0 < s <= 3600:
        raise ProtocolError("'seconds' must be a number in (0, 3600]")
    return float(s)


def parse_command(line: str, received: float = 0.0, lineno: int = 0) -> Command:
    """One control line -> Command (audio files not loaded yet). Raises ProtocolError."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"not JSON ({exc.msg} at column {exc.colno})") from exc
    return command_from_dict(obj, received, lineno)


def command_from_dict(obj, received: float = 0.0, lineno: int = 0) -> Command:
    if not isinstance(obj, dict):
        raise ProtocolError("a control line must be a JSON object")
    kind = obj.get("cmd")
    if kind not in KINDS:
        raise ProtocolError(f"unknown cmd {kind!r} (use one of: {', '.join(KINDS)})")
    cid = obj.get("id")
    c = Command(kind, received, None if cid is None else str(cid), lineno)
    if kind in ("speak", "listen") and "audio" in obj:
        if not isinstance(obj["audio"], str) or not obj["audio"]:
            raise ProtocolError(f"{kind}: 'audio' must be a file path")
        c.audio = obj["audio"]
        c.interrupt = bool(obj.get("interrupt", False))
    elif kind == "speak":
        raise ProtocolError("speak needs 'audio': a file path (or use speak_pcm for raw PCM)")
    elif kind in ("speak_pcm", "listen_pcm"):
        c.samples = _pcm(obj)
        final = obj.get("final", True)
        if not isinstance(final, bool):
            raise ProtocolError("speak_pcm: 'final' must be true or false")
        c.final = final
    elif kind == "listen":
        if not isinstance(obj.get("active"), bool):
            raise ProtocolError("listen needs 'active': true/false, or 'audio': a file path")
        c.active = obj["active"]
    elif kind == "state":
        st = obj.get("state")
        if st != "auto" and st not in STATES:
            raise ProtocolError(f"unknown state {st!r} (use one of: auto, {', '.join(STATES)})")
        c.state = st
        c.seconds = _seconds(obj)
        if c.seconds is None and st in GESTURES:
            c.seconds = GESTURE_SECONDS
    elif kind == "prompt":
        text = obj.get("text")
        if not isinstance(text, str) or len(text) > 500:
            raise ProtocolError("prompt needs 'text': a string (at most 500 characters; \"\" returns to auto)")
        c.prompt = text.strip()
        c.seconds = _seconds(obj)
        c.state = state_from_prompt(c.prompt) if c.prompt else "auto"
        if c.seconds is None and c.state in GESTURES:
            c.seconds = GESTURE_SECONDS
    return c


@dataclass(frozen=True)
class ScriptLine:
    at: float  # seconds after the stream starts
    text: str  # the control line itself (parsed when replayed, like a live line)
    lineno: int


def load_script(path: str | Path) -> list[ScriptLine]:
    """A script: JSON lines with "at" (seconds). Blank lines and lines starting with # are skipped.
    Lines that are not JSON objects with a valid "at" are a FlowactError (fix the file first);
    a bad command inside a valid line is replayed as-is and gets its error event, like live input."""
    path = Path(path)
    if not path.is_file():
        raise FlowactError("script file not found", path=path)
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        try:
            obj = json.loads(s)
        except json.JSONDecodeError as exc:
            raise FlowactError(f"line {n}: not JSON ({exc.msg})", path=path) from exc
        at = obj.get("at") if isinstance(obj, dict) else None
        if isinstance(at, bool) or not isinstance(at, (int, float)) or at < 0:
            raise FlowactError(f'line {n}: needs "at": seconds >= 0 after the stream starts', path=path)
        body = {k: v for k, v in obj.items() if k != "at"}
        out.append(ScriptLine(float(at), json.dumps(body), n))
    out.sort(key=lambda s: s.at)
    return out
