"""`flowact live` (interactive streaming). Registered by cli.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from .errors import FlowactError, sigterm_as_interrupt
from .cli_common import (
    DeviceOpt,
    DtypeOpt,
    FaceOpt,
    Fit,
    Int8Mode,
    Int8Opt,
    Planner,
    RoutePresetOpt,
    RandomWeightsOpt,
    WeightsOpt,
    load_route,
    stderr_console,
)


def register(app: typer.Typer) -> None:
    """Add the live command to the main app."""
    app.command(name="live")(live)


def live(
    image: Path = typer.Option(..., "--image", "-i", help="Reference picture (png/jpg/webp, any size)."),
    out: str = typer.Option(
        "live.mp4", "--out", "-o", help="Output .mp4, or '-' for a fragmented mp4 on stdout (pipe into a player)."
    ),
    preset: RoutePresetOpt = "auto",
    script: Optional[Path] = typer.Option(
        None,
        "--script",
        help=(
            'Replay timed commands: JSON lines with "at" (seconds after the stream starts). stdin is then '
            "not read unless --stdin."
        ),
    ),
    read_stdin: Optional[bool] = typer.Option(
        None, "--stdin/--no-stdin", help="Read JSON-lines commands from stdin (default: yes, unless --script)."
    ),
    duration: Optional[float] = typer.Option(
        None, "--duration", help="End after this many seconds of stream (default: at a stop command or Ctrl-C)."
    ),
    listen_audio: Optional[Path] = typer.Option(
        None,
        "--listen-audio",
        help="The user's voice (a file heard in real time from the start): the planner listens while it carries voice.",
    ),
    json_events: bool = typer.Option(
        False,
        "--json-events",
        help="Status events as JSON lines on stderr (chunk, state, command latency, late, error, memory, summary).",
    ),
    events_file: Optional[Path] = typer.Option(
        None, "--events", help="Write the JSON-lines events to this file instead of stderr."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON (to stderr when --out -)."),
    planner: Planner = typer.Option(
        Planner.rules,
        "--planner",
        help="rules: automatic states from voice activity | none: only commanded states (an external planner drives).",
    ),
    ahead: Optional[float] = typer.Option(
        None,
        "--ahead",
        help=(
            "Generate each chunk this many seconds before it is due (default: adapt to measured chunk "
            "cost). Lower = faster reactions, higher = fewer late chunks."
        ),
    ),
    seed: int = typer.Option(0, "--seed", help="Noise seed."),
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = None,
    int8: Int8Opt = Int8Mode.auto,
    weights: WeightsOpt = None,
    random_weights: RandomWeightsOpt = False,
    fit: Fit = typer.Option(Fit.cover, "--fit", help="cover | contain (see render --help)."),
    face: FaceOpt = None,
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads (default: all cores)."),
    ffmpeg: Optional[str] = typer.Option(None, "--ffmpeg", help="ffmpeg binary to use."),
):
    """Stream the character in IMAGE live, in real time, driven by JSON-lines commands.

    The stream never waits for input: with nothing to say the character idles or listens,
    frame after frame at the preset's rate, paced to the wall clock. Commands arrive on stdin,
    one JSON object per line (malformed lines get an error event; the stream goes on):

        {"cmd": "speak", "audio": "hello.wav"}

        {"cmd": "speak_pcm", "data": "<base64 s16le 16k mono>", "final": false}

        {"cmd": "state", "state": "thinking"}     (or "auto"; gestures: waving, nodding, ...)

        {"cmd": "prompt", "text": "wave hello"}

        {"cmd": "listen", "active": true}         (or "audio": "user.wav")

        {"cmd": "interrupt"}      {"cmd": "stop"}

    The audio track carries the character's speech in sync (silence otherwise). Ctrl-C or
    SIGTERM finalises the file (exit 130). A chunk that is not ready in time is reported
    (`late` event) and the last frame is held meanwhile: the output always matches the clock.

    Examples:

        flowact live -i examples/character_1.png --script examples/live_demo.jsonl --out demo.mp4

        flowact live -i face.png --out - --json-events < commands.jsonl | ffplay -

        my_agent | flowact live -i face.png --planner none --out session.mp4 --json-events 2> events.jsonl
    """
    from .config import load_preset
    from .live import EventLog, LiveOptions, load_script, run_live
    from .media.audio import load_audio
    from .media.ffmpeg import check_output, find_ffmpeg
    from .routes import route_of
    from .routes.choose import route_preset

    sigterm_as_interrupt()
    if duration is not None and duration <= 0:
        raise FlowactError("--duration must be positive")
    if ahead is not None and not 0 < ahead <= 10:
        raise FlowactError("--ahead must be in (0, 10] seconds")
    # every input is checked before the model loads
    preset = route_preset(preset, image)[0]
    p = load_preset(preset)
    reference, mesh = route_of(p).load_picture(p, image, fit.value, face)
    lines = load_script(script) if script is not None else None
    heard = load_audio(listen_audio, p.sample_rate).samples if listen_audio is not None else None
    check_output(out)
    find_ffmpeg(ffmpeg)
    if read_stdin is None:
        read_stdin = script is None
    err = stderr_console()
    route = load_route(err, p, device, dtype, weights, random_weights, seed, threads, int8)
    sink = None
    if events_file is not None:
        check_output(events_file)
        sink = open(events_file, "w", encoding="utf-8")
    elif json_events:
        sink = sys.stderr

    def human(ev: dict) -> None:
        kind = ev["event"]
        if kind == "start":
            err.print(
                f"live: {ev['preset']} {ev['fps']} fps -> {ev['out']}  (ahead {ev['ahead_ms']:.0f} ms; "
                "commands as JSON lines; Ctrl-C ends)"
            )
        elif kind == "error":
            err.print(f"[red]line {ev['line']}: {ev['message']}[/] (skipped)")
        elif kind == "late":
            err.print(f"[yellow]chunk {ev['index']} late: held {ev['held_frames']} frames[/]")
        elif kind == "state":
            err.print(f"{ev['t']:7.2f} s  {ev['state']}: {ev['prompt']} ({ev['by']})")
        elif kind == "command" and ev.get("latency_ms") is not None:
            err.print(f"{ev['t']:7.2f} s  {ev['cmd']} -> first frame in {ev['latency_ms']:.0f} ms")

    events = EventLog(sink, on_event=None if sink is not None else human)
    options = LiveOptions(out=out, duration=duration, ahead=ahead, seed=seed, ffmpeg=ffmpeg, planner=planner.value)
    try:
        report = run_live(
            route,
            reference,
            options,
            events=events,
            stdin=sys.stdin if read_stdin else None,
            script=lines,
            script_base=script.parent if script is not None else None,
            listen_audio=heard,
            face=mesh,
        )
        summary = report.to_dict()
        events.emit("summary", **summary)
    finally:
        if events_file is not None and sink is not None:
            sink.close()
    if as_json:
        print(json.dumps(summary, indent=2, default=str), file=sys.stderr if out == "-" else sys.stdout)
    elif sink is None:
        lat = report.latency_ms.get("all", {})
        err.print(
            f"{'interrupted: ' if report.interrupted else ''}wrote {report.frames} frames "
            f"({report.video_seconds:.2f} s, wall {report.wall_seconds:.2f} s) to {out} | "
            f"late chunks {report.late_chunks} ({report.held_frames} held frames) | commands {report.commands}, "
            f"errors {report.errors} | latency p50 {lat.get('p50')} ms, p95 {lat.get('p95')} ms"
        )
    if report.interrupted:
        raise typer.Exit(130)
