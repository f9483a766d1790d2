"""The paced live loop.

Two threads share one wall clock: frame slot n is due at t0 + n / fps.

- generation (the caller's thread): before chunk k it waits until `ahead` seconds before the
  chunk's due time, drains the commands that arrived, takes the chunk's own speech samples,
  asks the planner for a state, generates the chunk, queues it (bounded) once its first part is
  drawn, and draws the rest while that shows (the photo route: frame by frame, so a chunk needs
  to start only the motion and one warp ahead of its slot, not the whole chunk's warp);
- pacing (its own thread): sleeps until each slot is due and writes one frame + its PCM into
  ffmpeg. Command latency (received -> first frame reflecting it written) is measured here.

Late-chunk policy: hold and slip. If a slot comes due and its frame is not drawn (the next chunk
not ready, or a frame of this one), the last frame is written again with silence (a freeze) and a
`late` event reports it; the schedule of every later chunk slips by those held frames. The output
stays exactly as long as the wall clock, no generated frame and no speech sample is dropped, and
speech stays in sync with its frames (the filler carries silence). `ahead` adapts to how late each
chunk's parts were drawn against their slots (or is fixed by --ahead), so a machine that keeps up
settles with no holds.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, TextIO

import numpy as np
import torch

from ..allocator import keep_freed_memory
from ..errors import FlowactError
from ..handoff import POLL_SECONDS, StageFailed, put
from ..media.audio import load_audio
from ..render import peak_memory_mb, percentiles
from .events import EventLog
from .output import LiveWriter
from .planner import NullPlanner, Observation, Plan, Planner, RulePlanner, Vad, default_prompt
from .protocol import Command, ProtocolError, ScriptLine, parse_command
from .speech import RATE, ListenChannel, SpeechQueue

_END = object()


def rss_mb() -> float:
    """Resident memory now (not the peak), MB."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def loud_fraction(pcm: np.ndarray, window: int = 512, floor: float = 0.03) -> float:
    """Fraction of windows louder than -30 dBFS RMS. The character's own speech is speech by
    intent: a loud track the VAD does not call voice (a tone, singing) still moves the lips."""
    n = len(pcm) // window
    if n == 0:
        return 0.0
    rms = np.sqrt(np.mean(pcm[: n * window].reshape(n, window) ** 2, axis=1))
    return float(np.mean(rms > floor))


@dataclass
class LiveOptions:
    out: str = "live.mp4"
    duration: float | None = None  # seconds of stream; None: until stop / Ctrl-C
    ahead: float | None = None  # generate each chunk this long before it is due; None: adapt to measured cost
    max_ahead: float = 2.0
    seed: int = 0
    ffmpeg: str | None = None
    planner: str = "rules"  # rules | none
    memory_every: float = 60.0  # seconds of stream between memory events


@dataclass
class _Control:
    """What commands have set for the chunks to come."""

    override: dict | None = None  # a commanded state: {"state", "prompt", "until" (stream seconds or None)}
    user_active: bool | None = None  # the user's voice, as a `listen` command declared it


class _Frames:
    """A chunk's frames as they are drawn: the generation thread adds parts and finishes; the pacing
    thread takes frame i, waiting for it at most until a deadline."""

    def __init__(self):
        self._frames: list[np.ndarray] = []
        self._finished = False
        self._cv = threading.Condition()
        self.taken = 0  # frames the pacing thread has taken (the one showing is taken - 1)

    def add(self, part: np.ndarray) -> None:
        with self._cv:
            self._frames.extend(part)
            self._cv.notify_all()

    def finish(self) -> None:
        """No more parts (all drawn, or the drawing failed)."""
        with self._cv:
            self._finished = True
            self._cv.notify_all()

    @property
    def count(self) -> int:
        with self._cv:
            return len(self._frames)

    def get(self, i: int, deadline: float):
        """Frame i; None if it is not drawn by `deadline` (perf_counter); _END if it never will be."""
        with self._cv:
            while len(self._frames) <= i and not self._finished:
                left = deadline - time.perf_counter()
                if left <= 0:
                    return None
                self._cv.wait(left)
            if i >= len(self._frames):
                return _END
            self.taken = max(self.taken, i + 1)
            return self._frames[i]

    def splice(self, start: int, part: np.ndarray, commit) -> bool:
        """Frames from `start` on replaced by `part` (the rest follow with `add`, then `finish`), and
        `commit()` run, at once, if the pacing thread has not taken frame `start` yet; False (nothing
        changed) if it has."""
        with self._cv:
            if self.taken > start or len(self._frames) < start:
                return False
            del self._frames[start:]
            self._frames.extend(part)
            self._finished = False
            commit()
            return True


@dataclass
class _Chunk:
    index: int
    frames: _Frames  # uint8 (H, W, 3) each, F in all, drawn while the first ones show
    pcm: np.ndarray  # float32 (F * rate / fps,)
    plan: Plan
    reflects: list  # (command, frame in this chunk) where each is first reflected
    gen_ms: float  # generation and drawing, all its frames
    ready: float  # perf_counter when queued (its first frame drawn)
    due: float  # perf_counter of its first slot, as planned when it was generated
    speech_voiced: float
    user_voiced: float


@dataclass
class LiveReport:
    output: str
    preset: str
    weights: str
    conditions: str
    fps: int
    frames: int
    held_frames: int
    video_seconds: float
    wall_seconds: float  # t0 -> last frame written
    chunks: int
    late_chunks: int
    commands: int
    errors: int
    latency_ms: dict  # per command kind: p50 / p95 / max / n
    ahead_ms: float
    peak_memory_mb: float
    memory_mb: list  # [[stream seconds, rss MB], ...]
    interrupted: bool = False
    chunk_gen_ms: dict = field(default_factory=dict)
    splices: int = 0  # chunks made again from a frame on, for speech that arrived while they showed

    def to_dict(self) -> dict:
        return asdict(self)


class LiveSession:
    """One live stream of one reference picture. Feed it lines (`submit`, `read_lines`,
    `play_script`), then `run()` blocks until stop / duration / Ctrl-C and returns the report."""

    def __init__(
        self,
        route,
        reference: np.ndarray,
        options: LiveOptions,
        events: EventLog,
        planner: Planner | None = None,
        listen_audio: np.ndarray | None = None,
        face=None,
        output=None,
    ):
        """route: a loaded route (routes/); reference: the picture as its `load_picture` gave it, with
        its face mesh (`face`, the photo route). `output`: where the paced frames go, an object with
        LiveWriter's `write(frame, pcm) -> time`, `frames` and `close()` (None: ffmpeg into `options.out`;
        `flowact serve` passes its WebRTC tracks)."""
        self.route, self.p, self.opt, self.events = route, route.preset, options, events
        self.reference = reference
        self.picture = route.prepare(reference, face)  # per picture, once: shared by the warm-up and the stream
        self.face_note = f", {face.which} of the photo" if getattr(face, "which", "") else ""
        self.fps = self.p.video.fps
        self.F = self.p.frames_per_chunk
        self.spf = RATE // self.fps
        self.chunk_seconds = self.F / self.fps
        self.planner: Planner = planner or (NullPlanner() if options.planner == "none" else RulePlanner())
        self._initial_listen = listen_audio
        self._output = output
        self._commands: queue.Queue = queue.Queue()
        self._heard: queue.SimpleQueue = queue.SimpleQueue()  # (samples, arrival) from `hear`
        self._out: queue.Queue = queue.Queue(maxsize=max(2, math.ceil(options.max_ahead / self.chunk_seconds) + 2))
        self._stop = threading.Event()  # stop requested (command, duration): finish what is queued
        self._abort = threading.Event()  # Ctrl-C / failure: end now
        self._seq = 0
        self._seq_lock = threading.Lock()
        self.t0: float | None = None
        self.held = 0  # filler frames written so far (pacing thread)
        self._failure: list[tuple[str, BaseException]] = []  # (stage, error), first first
        self._latency: list[tuple[str, float]] = []
        self._pending: dict[int, Command] = {}  # speak commands whose audio has not started yet
        self._stop_cmds: list[Command] = []
        self.n_commands = self.n_errors = 0
        self.late_chunks = 0
        self.memory: list[list[float]] = []
        self._gen_ms: list[float] = []  # each chunk's generation and drawing
        self._need_ms: list[float] = []  # each chunk's margin needed: its latest part against its slot
        self._speech_arrived = threading.Event()  # a speak command is waiting (the live loop may splice it)
        self.splices = 0  # chunks made again from a frame on for speech that arrived while they showed
        self._splice_ms: list[float] = []
        self._interrupts = 0
        self.ahead = options.ahead or 0.3
        self._threads: list[threading.Thread] = []

    # ---- input side (any thread) ------------------------------------------------------------

    def submit(self, line: str, lineno: int = 0, base: Path | None = None, received: float | None = None) -> None:
        """One control line. Bad lines become an `error` event; nothing raises."""
        received = time.perf_counter() if received is None else received
        if not line.strip():
            return
        try:
            cmd = parse_command(line, received, lineno)
            if cmd.audio is not None:
                path = Path(cmd.audio)
                if base is not None and not path.is_absolute():
                    path = base / path
                try:
                    cmd.samples = load_audio(path, RATE, allow_silent=True).samples
                except FlowactError as exc:
                    raise ProtocolError(str(exc)) from exc
        except ProtocolError as exc:
            self.n_errors += 1
            self.events.emit("error", line=lineno, message=str(exc), text=line.strip()[:200])
            return
        self.enqueue(cmd, lineno)

    def enqueue(self, cmd: Command, lineno: int = 0) -> None:
        """A parsed command whose audio (if any) is already in `cmd.samples`: what `submit` ends with,
        and what an embedding server calls once it has checked the command itself."""
        with self._seq_lock:
            self._seq += 1
            cmd.extra["seq"] = self._seq
        self.n_commands += 1
        self.events.emit("received", **cmd.describe(), line=lineno)
        self._commands.put(cmd)
        if cmd.kind in ("speak", "speak_pcm"):
            self._speech_arrived.set()

    def read_lines(self, stream: TextIO) -> None:
        """Read control lines from a stream (stdin) in a daemon thread; EOF ends reading, not the stream."""

        def loop():
            for n, line in enumerate(stream, 1):
                self.submit(line, n)

        self._start_thread(loop, "flowact-live-stdin")

    def play_script(self, lines: Iterable[ScriptLine], base: Path | None = None) -> None:
        """Replay timed lines (`at` seconds after the stream starts) in a daemon thread; call after `start`."""
        lines = list(lines)

        def loop():
            for s in lines:
                while not self._abort.is_set() and not self._stop.is_set():
                    wait = self.t0 + s.at - time.perf_counter()
                    if wait <= 0:
                        break
                    time.sleep(min(wait, 0.05))
                else:
                    return
                self.submit(s.text, s.lineno, base)

        self._pending_script = loop

    def hear(self, samples: np.ndarray, at: float | None = None) -> None:
        """The user's microphone, streamed in-process (16 kHz float32 pieces that arrived at `at`, a
        perf_counter time; default now): like `listen_pcm`, without a command event per piece."""
        self._heard.put((samples, time.perf_counter() if at is None else at))

    def stop(self) -> None:
        self._stop.set()

    def _start_thread(self, target, name):
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    # ---- the loop ---------------------------------------------------------------------------

    def run(self, stdin: TextIO | None = None) -> LiveReport:
        route, p = self.route, self.p
        keep_freed_memory()  # once per process (allocator.py): `flowact serve`'s sessions get it too
        warm_s = self._warm_up()
        stream = route.stream(self.picture, self.opt.seed)
        speech, listen = SpeechQueue(), ListenChannel()
        own_vad, user_vad = Vad(), Vad()
        own_vad.warm_up()
        user_vad.warm_up()
        h, w = self.reference.shape[:2]  # the preset's size (toon) or the photo's framing (photo route)
        writer = self._output
        if writer is None:
            writer = LiveWriter(self.opt.out, w, h, self.fps, RATE, ffmpeg=self.opt.ffmpeg)

        self.t0 = self.events.t0 = time.perf_counter() + self.ahead
        self.events.emit(
            "start",
            preset=p.name,
            fps=self.fps,
            chunk_frames=self.F,
            chunk_seconds=self.chunk_seconds,
            ahead_ms=round(1000 * self.ahead, 1),
            warmup_ms=round(1000 * warm_s, 1),
            out=self.opt.out,
            weights=route.source.describe(),
            conditions=route.conditions() + self.face_note,
            planner=type(self.planner).__name__,
        )
        if self._initial_listen is not None:
            listen.add(self._initial_listen, self.t0)
        if stdin is not None:
            self.read_lines(stdin)
        if getattr(self, "_pending_script", None):
            self._start_thread(self._pending_script, "flowact-live-script")
        total_slots = None if self.opt.duration is None else max(1, round(self.opt.duration * self.fps))
        pacer = threading.Thread(target=self._pace, args=(writer, total_slots), name="flowact-live-pace", daemon=True)
        pacer.start()

        ctl = _Control()
        interrupted = False
        k = 0
        edge = None  # the newest chunk while speech may still be spliced into it: (item, stream state before it)
        carried: list = []  # commands taken early (with a splice) that the next chunk reflects
        try:
            while not self._abort.is_set():
                due = self.t0 + (k * self.F + self.held) / self.fps
                if total_slots is not None and k * self.F + self.held >= total_slots:
                    break
                while not (self._abort.is_set() or self._stop.is_set()) and time.perf_counter() < due - self.ahead:
                    if edge is not None and self._speech_arrived.is_set():
                        self._speech_arrived.clear()
                        try:
                            with torch.no_grad():
                                carried += self._splice(edge, stream, ctl, speech, listen, due - self.t0)
                        except Exception as exc:  # noqa: BLE001 - raised once what was queued is written
                            self._failure.append((stream.stage, exc))
                            break
                        continue
                    time.sleep(min(0.01, max(0.0, due - self.ahead - time.perf_counter())))
                if self._failure:
                    break
                t_gen = time.perf_counter()
                tstream = due - self.t0
                # --- commands that arrived: they shape this chunk
                reflects = carried + self._apply_commands(ctl, speech, listen, tstream)
                carried = []
                if self._stop.is_set():
                    break
                if ctl.override is not None and ctl.override["until"] is not None and tstream >= ctl.override["until"]:
                    ctl.override = None
                # --- this chunk's own speech, the user's voice, the plan
                pcm, started = speech.take(self.F * self.spf)
                for seq, at in started:  # speech is reflected by the frame where its first sample plays
                    reflects.append((self._pending.pop(seq), at // self.spf))
                while not self._heard.empty():
                    listen.extend(*self._heard.get_nowait())
                heard = listen.poll(time.perf_counter())
                obs = Observation(
                    index=k,
                    t=tstream,
                    chunk_seconds=self.chunk_seconds,
                    speech_voiced=max(own_vad.voiced(pcm), loud_fraction(pcm)),
                    speech_rms=float(np.sqrt(np.mean(pcm**2))),
                    speech_pending=speech.pending / RATE,
                    utterance_open=speech.utterance_open,
                    user_voiced=user_vad.voiced(heard) if len(heard) else 0.0,
                    user_rms=float(np.sqrt(np.mean(heard**2))) if len(heard) else 0.0,
                    user_active=ctl.user_active,
                    commanded_state=ctl.override["state"] if ctl.override else None,
                    commanded_prompt=ctl.override["prompt"] if ctl.override else None,
                )
                plan = self.planner.update(obs)
                # --- generate, and draw: the chunk is queued once its first part is drawn, the rest is drawn
                # while that shows. How late each part is, against when its first frame must show, sets `ahead`
                frames = _Frames()
                need = 0.0  # seconds from t_gen a part of this chunk needed beyond its first frame's slot offset
                before = stream.snapshot()  # to make this chunk again if speech arrives while it shows
                try:
                    with torch.no_grad():
                        ahead = speech.peek(stream.lookahead_samples)
                        parts = stream.live_parts(k, plan.prompt, plan.state, pcm, ahead)
                        first = next(parts)
                except Exception as exc:  # noqa: BLE001 - raised once what was queued is written and the file finalised
                    self._failure.append((stream.stage, exc))
                    break
                frames.add(first)
                need = time.perf_counter() - t_gen
                item = _Chunk(
                    k, frames, pcm, plan, reflects, 0.0, time.perf_counter(), due, obs.speech_voiced, obs.user_voiced
                )
                if not put(self._out, item, lambda: pacer.is_alive() and not self._abort.is_set()):
                    frames.finish()
                    break  # the pacing thread ended (duration reached, or it failed)
                drawn = len(first)
                cut = False  # speech arrived while the rest was drawn: the splice makes the rest, with it
                try:
                    with torch.no_grad():
                        while not (cut := before is not None and self._speech_arrived.is_set()):
                            part = next(parts, None)
                            if part is None:
                                break
                            frames.add(part)
                            need = max(need, time.perf_counter() - t_gen - drawn / self.fps)
                            drawn += len(part)
                        if cut:
                            parts.close()
                            self._speech_arrived.clear()
                            tnext = (k + 1) * self.F / self.fps + self.held / self.fps
                            carried += self._splice((item, before), stream, ctl, speech, listen, tnext)
                except Exception as exc:  # noqa: BLE001 - raised once what was queued is written and the file finalised
                    self._failure.append((stream.stage, exc))
                    break
                finally:
                    frames.finish()
                gen_s = time.perf_counter() - t_gen
                item.gen_ms = gen_s * 1000
                self._gen_ms.append(gen_s * 1000)
                if not cut:  # a cut chunk's drawing time includes a splice's: not a chunk's need
                    self._need_ms.append(need * 1000)
                if self.opt.ahead is None and self._need_ms:  # ~25% headroom over the slowest recent chunk's need
                    recent = max(self._need_ms[-8:]) / 1000
                    self.ahead = min(self.opt.max_ahead, max(0.1, 1.25 * recent + 0.04))
                edge = None if before is None else (item, before)
                k += 1
        except KeyboardInterrupt:
            interrupted = True
            self._abort.set()
        finally:
            frames_written, t_end, interrupted = self._close(pacer, writer, interrupted)
        if self._failure:
            stage, exc = self._failure[0]
            if isinstance(exc, FlowactError):
                raise exc
            raise StageFailed(stage, exc, self.opt.out, frames_written) from exc
        for cmd in self._stop_cmds:
            self._report_latency(cmd, t_end, frames_written)
        for cmd in self._pending.values():  # speech still queued when the stream ended
            self.events.emit("command", **cmd.describe(), latency_ms=None, reflected=False)
        self.memory.append([round(t_end - self.t0, 2), round(rss_mb(), 1)])
        return self._report(frames_written, t_end, interrupted)

    def _warm_up(self):
        """A throwaway stream, so that first-call costs do not make chunk 0 late; returns the
        second chunk's time (first-call costs paid), which sets the initial `ahead`. The common
        prompts are encoded on the way (the route keeps them for the live stream)."""
        warm = self.route.stream(self.picture, self.opt.seed)
        warm.prime([default_prompt(st) for st in ("idle", "speaking", "listening", "thinking")])
        silence = np.zeros(warm.chunk_samples, np.float32)
        for i in range(2):
            t = time.perf_counter()
            with torch.no_grad():
                warm.frames(i, default_prompt("idle"), "idle", silence, silence)
            warm_s = time.perf_counter() - t
        if self.opt.ahead is None:
            self.ahead = min(self.opt.max_ahead, max(0.1, 1.5 * warm_s + 0.05))
        return warm_s

    def _apply_commands(
        self, ctl: "_Control", speech: SpeechQueue, listen: ListenChannel, tstream: float
    ) -> list[tuple[Command, int]]:
        """Take the commands that arrived since the last chunk: queue speech, set or clear the
        commanded state, route the user's voice, note a stop. Returns the commands this chunk
        reflects, each with the frame (within the chunk) that first shows it."""
        reflects: list[tuple[Command, int]] = []
        while True:
            try:
                cmd = self._commands.get_nowait()
            except queue.Empty:
                break
            kind = cmd.kind
            if kind in ("speak", "speak_pcm"):
                if cmd.interrupt:
                    self._drop_pending_speech(speech)
                if ctl.override is not None and ctl.override["until"] is None and ctl.override["state"] != "speaking":
                    ctl.override = None  # the agent speaks: a held state gives way
                if cmd.samples is not None and len(cmd.samples):
                    speech.push(cmd.samples, cmd.extra["seq"], cmd.final)
                    self._pending[cmd.extra["seq"]] = cmd
                else:
                    speech.utterance_open = not cmd.final
                    reflects.append((cmd, 0))
            elif kind in ("state", "prompt"):
                if cmd.state == "auto":
                    ctl.override = None
                else:
                    prompt = cmd.prompt if kind == "prompt" else default_prompt(cmd.state)
                    ctl.override = {
                        "state": cmd.state or "idle",
                        "prompt": prompt,
                        "until": None if cmd.seconds is None else tstream + cmd.seconds,
                    }
                reflects.append((cmd, 0))
            elif kind == "listen":
                if cmd.samples is not None:
                    listen.add(cmd.samples, time.perf_counter())
                else:
                    ctl.user_active = cmd.active
                reflects.append((cmd, 0))
            elif kind == "listen_pcm":
                listen.extend(cmd.samples, cmd.received)
                reflects.append((cmd, 0))
            elif kind == "interrupt":
                self._drop_pending_speech(speech)
                reflects.append((cmd, 0))
            elif kind == "stop":
                self._stop_cmds.append(cmd)
                self._stop.set()
        return reflects

    def _close(self, pacer: threading.Thread, writer, interrupted: bool) -> tuple[int, float, bool]:
        """What is queued still plays out (paced), then the file is finalised. Returns (frames
        written, end time, interrupted)."""
        put(self._out, _END, pacer.is_alive)
        try:
            while pacer.is_alive():
                pacer.join(POLL_SECONDS)
        except KeyboardInterrupt:  # a second Ctrl-C while flushing: stop writing, still finalise
            interrupted = True
            self._abort.set()
            pacer.join()
        self._abort.set()  # readers and script end
        frames_written = writer.frames
        t_end = time.perf_counter()
        try:
            writer.close()
        except FlowactError:
            if not self._failure:
                raise
        return frames_written, t_end, interrupted

    def _splice(self, edge, stream, ctl: "_Control", speech: SpeechQueue, listen: ListenChannel, tstream: float):
        """Speech that arrives while the newest chunk shows (or waits to) starts a few frames ahead of the
        one showing: the chunk is made again from the state before it (`stream.snapshot`) with the speech
        in its samples from that frame on, and its frames from there are replaced, instead of the speech
        waiting for the next chunk (up to a chunk, 320 ms, more). Only when nothing was speaking there or
        the speech interrupts. Returns what the commands taken now reflect, for the next chunk."""
        item, before = edge
        interrupts = self._interrupts
        reflects = self._apply_commands(ctl, speech, listen, tstream)
        have = item.frames.count  # frames drawn (fewer than F: the chunk's drawing was cut for this splice)
        t = time.perf_counter()
        # the splice's own time to its first new frame (at first: a chunk's to its first frame; before any
        # chunk was measured: the margin ahead), a quarter more
        recent = self._splice_ms[-4:] or self._need_ms[-4:]
        est = 1.25 * (max(recent) / 1000 if recent else self.ahead)
        if item.frames.taken == 0 and item.due - t > est + 1 / self.fps:
            s = 0  # not showing yet, and time to make it again whole
        else:
            s = item.frames.taken + math.ceil(est * self.fps) + 1
        spf, F = self.spf, self.F
        if s >= F or not speech.pending or (np.any(item.pcm[s * spf :]) and self._interrupts == interrupts):
            # too late in the chunk, nothing to say, or it speaks there already (the new speech follows)
            self._complete(item, before, stream, have, speech)
            return reflects
        after = stream.snapshot()
        stream.restore(before)
        pcm = item.pcm.copy()
        tail = (F - s) * spf
        pcm[s * spf :] = speech.peek(tail)
        look = speech.peek(tail + stream.lookahead_samples)[tail:]
        # drawn from frame s (or from the first frame not drawn yet: up to s its samples are the chunk's own)
        d = min(s, have)
        parts = stream.live_parts(item.index, item.plan.prompt, item.plan.state, pcm, look, d)
        first = next(parts)

        def commit():
            item.pcm[s * spf :] = pcm[s * spf :]
            for seq, at in speech.take(tail)[1]:  # speech is reflected by the frame where its first sample plays
                item.reflects.append((self._pending.pop(seq), s + at // spf))

        self._splice_ms.append((time.perf_counter() - t) * 1000)
        if not item.frames.splice(d, first, commit):  # frame d came up first: the speech waits for the next chunk
            parts.close()
            stream.restore(after)
            self._complete(item, before, stream, have, speech)
            return reflects
        try:
            for part in parts:  # the rest drawn while the first new frame shows (the pacer waits for each)
                item.frames.add(part)
        finally:
            item.frames.finish()
        self.splices += 1
        # cut: the chunk's own drawing was stopped for it (the speech came while its rest was being drawn)
        self.events.emit("splice", index=item.index, at=s, ms=round(self._splice_ms[-1], 1), cut=have < F)
        return reflects

    def _complete(self, item: _Chunk, before, stream, have: int, speech: SpeechQueue) -> None:
        """A chunk whose drawing was cut for a splice that did not happen: its frames from `have` on,
        made again from the state before it with its own samples (the stream's state then follows them)."""
        if have >= self.F:
            return
        stream.restore(before)
        look = speech.peek(stream.lookahead_samples)
        parts = stream.live_parts(item.index, item.plan.prompt, item.plan.state, item.pcm, look, have)
        for part in parts:
            item.frames.add(part)

    def _drop_pending_speech(self, speech: SpeechQueue) -> None:
        self._interrupts += 1
        speech.clear()
        for cmd in self._pending.values():
            self.events.emit("command", **cmd.describe(), latency_ms=None, reflected=False, dropped="interrupted")
        self._pending.clear()

    def _report_latency(self, cmd: Command, written: float, frame: int) -> None:
        ms = (written - cmd.received) * 1000
        self._latency.append((cmd.kind, ms))
        self.events.emit("command", **cmd.describe(), latency_ms=round(ms, 1), frame=frame)

    # ---- pacing thread ------------------------------------------------------------------------

    def _pace(self, writer: LiveWriter, total_slots: int | None) -> None:
        try:
            self._pace_loop(writer, total_slots)
        except BaseException as exc:  # noqa: BLE001 - handed to the generation thread
            self._failure.append(("output", exc))
            self._abort.set()

    def _pace_loop(self, writer: LiveWriter, total_slots: int | None) -> None:
        slot, item, cursor = 0, None, 0
        last_frame = self.reference
        silence = np.zeros(self.spf, np.float32)
        held_run, last_plan = 0, None
        next_memory = 0.0
        grace = 0.5 / self.fps  # half a frame: a chunk that is ready a hair after its slot is not late
        while not self._abort.is_set():
            if total_slots is not None and slot >= total_slots:
                self._stop.set()
                return
            due = self.t0 + slot / self.fps
            if slot / self.fps >= next_memory:
                self.memory.append([round(slot / self.fps, 2), round(rss_mb(), 1)])
                self.events.emit("memory", rss_mb=self.memory[-1][1], frame=slot)
                next_memory += self.opt.memory_every
            if item is None:
                try:
                    item = self._out.get(timeout=max(0.0, due + grace - time.perf_counter()))
                except queue.Empty:
                    item = None
                if item is _END:
                    return
                if item is not None:
                    cursor = 0
            # the frame, drawn by now (a chunk's frames are drawn while its first ones show), else held
            frame = None if item is None else item.frames.get(cursor, due + grace)
            if frame is _END:  # its drawing failed: the chunk ends here
                item = None
                continue
            if frame is None:  # late: hold the last frame, with silence, and slip the schedule
                self._sleep_until(due)
                writer.write(last_frame, silence)
                self.held += 1
                held_run += 1
                slot += 1
                continue
            if held_run:
                self.late_chunks += 1
                self.events.emit(
                    "late",
                    index=item.index,
                    held_frames=held_run,
                    late_ms=round(held_run * 1000 / self.fps, 1),
                    gen_ms=round(item.gen_ms, 1) if item.gen_ms else None,  # None: the chunk is still being drawn
                    frame=slot,
                )
                held_run = 0
            self._sleep_until(due)
            written = writer.write(frame, item.pcm[cursor * self.spf : (cursor + 1) * self.spf])
            for cmd, at in item.reflects:
                if at == cursor:
                    self._report_latency(cmd, written, slot)
            if cursor == 0:
                if last_plan is None or (item.plan.state, item.plan.prompt) != (last_plan.state, last_plan.prompt):
                    self.events.emit(
                        "state",
                        state=item.plan.state,
                        prompt=item.plan.prompt,
                        by=item.plan.by,
                        previous=None if last_plan is None else last_plan.state,
                        frame=slot,
                    )
                    last_plan = item.plan
            last_frame = frame
            cursor += 1
            slot += 1
            if cursor * self.spf >= len(item.pcm):  # its last frame (a chunk's frames match its speech)
                self.events.emit(
                    "chunk",
                    index=item.index,
                    frame=slot - cursor,
                    state=item.plan.state,
                    prompt=item.plan.prompt,
                    speech=round(item.speech_voiced, 2),
                    user=round(item.user_voiced, 2),
                    gen_ms=round(item.gen_ms, 1),
                    slack_ms=round((item.due - item.ready) * 1000, 1),
                    ahead_ms=round(self.ahead * 1000, 1),
                )
                item = None

    def _sleep_until(self, when: float) -> None:
        while not self._abort.is_set():
            wait = when - time.perf_counter()
            if wait <= 0:
                return
            time.sleep(min(wait, 0.05))

    def _report(self, frames: int, t_end: float, interrupted: bool) -> LiveReport:
        kinds: dict[str, list[float]] = {}
        for kind, ms in self._latency:
            kinds.setdefault(kind, []).append(ms)
        latency = {k: {**percentiles(v), "n": len(v)} for k, v in sorted(kinds.items())}
        latency["all"] = {**percentiles([ms for _, ms in self._latency]), "n": len(self._latency)}
        e = self.route
        return LiveReport(
            output=self.opt.out,
            preset=self.p.name,
            weights=e.source.describe(),
            conditions=e.conditions() + self.face_note,
            fps=self.fps,
            frames=frames,
            held_frames=self.held,
            video_seconds=frames / self.fps,
            wall_seconds=round(t_end - self.t0, 3),
            chunks=len(self._gen_ms),
            late_chunks=self.late_chunks,
            commands=self.n_commands,
            errors=self.n_errors,
            latency_ms=latency,
            ahead_ms=round(self.ahead * 1000, 1),
            peak_memory_mb=round(peak_memory_mb(e.device), 1),
            memory_mb=self.memory,
            interrupted=interrupted,
            chunk_gen_ms=percentiles(self._gen_ms),
            splices=self.splices,
        )


def run_live(
    route,
    reference: np.ndarray,
    options: LiveOptions,
    *,
    events: EventLog | None = None,
    stdin: TextIO | None = None,
    script: list[ScriptLine] | None = None,
    script_base: Path | None = None,
    listen_audio: np.ndarray | None = None,
    planner: Planner | None = None,
    face=None,
) -> LiveReport:
    """A whole live session as one call: commands from `stdin` (a text stream) and/or a `script`.
    `face`: the reference's face mesh, on the photo route."""
    session = LiveSession(route, reference, options, events or EventLog(), planner, listen_audio, face)
    if script:
        session.play_script(script, script_base)
    return session.run(stdin)
