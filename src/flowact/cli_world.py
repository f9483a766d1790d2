"""`flowact synth` and `flowact eval` (the synthetic world and the judge). Registered by cli.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .cli_common import stderr_console

SYNTH_HELP = """Make a dataset of synthetic talking characters with exact ground truth.

Each clip gets a new procedural character, an espeak-ng voice and a random behaviour
timeline; DIR receives clip_NNNNN.mp4 (H.264 + speech), .wav (16 kHz), .ref.png (neutral
reference frame), .json (per-frame labels) and synth.json (summary). Needs espeak-ng
(`apt-get install espeak-ng`).

Examples:

  flowact synth --out data/toy --clips 100 --seconds 4 --size 128x128 --seed 0

  flowact synth --out data/wide --clips 4 --seconds 6 --size 832x480 --workers 2 --json
"""

EVAL_HELP = """Score a video with the evaluator: lip-sync, behaviour, identity, flicker.

Lip-sync correlates the mouth openness read from the frames with the openness implied by
the audio (phonemes from --timeline when it is a synth labels file, else an audio model),
and finds the best audio-video offset. Behaviour accuracy compares the state read from the
frames with the --timeline (a synth labels .json, or a JSON/YAML list of segments with
start, end and state or prompt). Identity is the appearance distance to the reference over
time (mean, and drift slope per second); flicker is the mean second temporal difference.

A photograph as --reference (the photo route) is read back by the face-landmark model instead:
the inner-lip gap against the speech's loudness (correlation, best offset), head and eye
motion, the face's shape and skin colour against the photo's (identity, drift), jitter.

Examples:

  flowact eval out.mp4 --audio examples/speech_en.wav --reference examples/character_1.png

  flowact eval human_speech.flowact.mp4 --audio examples/human_speech.wav --reference examples/astronaut.jpg

  flowact eval data/toy/clip_00000.mp4 --audio data/toy/clip_00000.wav \\
      --reference data/toy/clip_00000.ref.png --timeline data/toy/clip_00000.json --json
"""


def synth(
    out: Path = typer.Option(..., "--out", help="Output folder (created if missing)."),
    clips: int = typer.Option(10, "--clips", help="Number of clips."),
    seconds: float = typer.Option(4.0, "--seconds", help="Length of each clip in seconds."),
    size: str = typer.Option("128x128", "--size", help="Frame size WIDTHxHEIGHT, even sides."),
    seed: int = typer.Option(0, "--seed", help="Dataset seed: the same seed gives the same clips."),
    workers: int = typer.Option(1, "--workers", help="Parallel worker processes (default 1)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .world.synth import SynthRequest, parse_size, synth_dataset

    width, height = parse_size(size)
    req = SynthRequest(out, clips, seconds, width, height, seed, max(1, workers))
    with Progress(
        TextColumn("synth"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=stderr_console(soft_wrap=False),
        transient=True,
        disable=as_json,
    ) as bar:
        task = bar.add_task("clips", total=clips)
        manifest = synth_dataset(req, progress=lambda n: bar.advance(task, n))
    summary = {k: v for k, v in manifest.items() if k not in ("clips", "seeds")}
    summary["out"] = str(out)
    summary["clips"] = len(manifest["clips"])
    if as_json:
        print(json.dumps(summary))
        return
    print(f"wrote {summary['clips']} clips ({summary['frames']} frames) to {out} in {summary['wall_seconds']:.1f} s")
    print(
        f"render {summary['render_fps_per_core']:.0f} frames/s per core, end to end "
        f"{summary['end_to_end_fps_per_core']:.0f} "
        f"frames/s per core (speech, render, encode); {summary['bytes_per_clip_second'] / 1000:.1f} kB per clip-second "
        f"({summary['mp4_bytes_per_clip_second'] / 1000:.1f} kB of it mp4)"
    )


def evaluate(
    video: Path = typer.Argument(..., help="Video to score (mp4 or anything ffmpeg reads)."),
    audio: Path = typer.Option(..., "--audio", help="The speech track the video should lip-sync to."),
    reference: Path = typer.Option(..., "--reference", help="Reference image of the character."),
    timeline: Optional[Path] = typer.Option(
        None, "--timeline", help="Behaviour timeline (synth labels .json, or JSON/YAML segments)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
) -> None:
    from rich.console import Console
    from rich.table import Table

    from .judge.evaluate import evaluate_video
    from .judge.photo import evaluate_photo_video
    from .media.image import read_image
    from .routes.choose import looks_like_photo

    photo = looks_like_photo(read_image(reference))
    with stderr_console(soft_wrap=False).status("evaluating", spinner="dots") if not as_json else _null():
        if photo:
            report = evaluate_photo_video(video, audio, reference)
        else:
            report = evaluate_video(video, audio, reference, timeline)
    if as_json:
        print(json.dumps(report))
        return
    if photo:
        Console().print(_photo_table(video, report))
        return

    t = Table(title=f"flowact eval (judge v{report.get('judge_version', 1)}): {video}", show_header=True)
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_column("meaning")
    ls, ident, beh, fl = report["lipsync"], report["identity"], report["behaviour"], report["flicker"]
    if ls["applicable"]:
        t.add_row("lip-sync correlation", f"{ls['correlation']:.3f}", "mouth openness vs audio at offset 0 (1 is best)")
        t.add_row(
            "best offset",
            f"{ls['best_offset_s']:+.2f} s",
            f"correlation there {ls['best_correlation']:.3f} (+: video late)",
        )
    else:
        t.add_row("lip-sync", "n/a", ls["reason"])
    t.add_row(
        "mouth motion",
        f"{report['mouth']['open_std']:.3f}",
        "std of the openness read (speech: ~0.1-0.25; a still mouth: under ~0.07)",
    )
    acc = beh.get("accuracy")
    t.add_row("behaviour accuracy", "-" if acc is None else f"{acc:.3f}", "state read from frames vs timeline")
    t.add_row("identity distance", f"{ident['mean']:.3f}", "to the reference, mean (0 is identical)")
    t.add_row("identity drift", f"{ident['slope_per_s']:+.4f}/s", "slope of the distance over time")
    t.add_row("flicker", f"{fl['second_diff']:.2f}", "mean |second temporal difference|, 0-255 scale")
    Console().print(t)


def _photo_table(video, r: dict):
    from rich.table import Table

    t = Table(title=f"flowact eval (photo route, face landmarks): {video}", show_header=True)
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_column("meaning")
    ls, mo, ident = r["lipsync"], r["motion"], r["identity"]
    t.add_row("lip-sync correlation", f"{ls['correlation']:.3f}", "inner-lip gap vs loudness at offset 0 (1 is best)")
    t.add_row(
        "best offset",
        f"{ls['best_offset_s']:+.2f} s",
        f"correlation there {ls['best_correlation']:.3f} (+: video late)",
    )
    t.add_row("lip gap", f"{ls['lip_gap_mean']:.3f} +- {ls['lip_gap_std']:.3f}", "inner-lip distance / eye distance")
    t.add_row("head motion", f"{mo['head_turn_std']:.4f}", "std of the nose's offset from the eyes (0: frozen)")
    t.add_row(
        "identity: shape",
        f"{ident['shape_mean']:.4f}",
        f"landmarks vs the photo's, drift {ident['shape_slope_per_s']:+.5f}/s",
    )
    t.add_row(
        "identity: colour",
        f"{ident['colour_mean']:.2f}",
        f"skin RGB vs the photo's, drift {ident['colour_slope_per_s']:+.4f}/s",
    )
    t.add_row("jitter", f"{r['jitter']:.5f}", "landmark acceleration (eye distance per frame^2)")
    return t


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def register(app: typer.Typer) -> None:
    """Add the world's commands to the main app."""
    app.command("synth", help=SYNTH_HELP)(synth)
    app.command("eval", help=EVAL_HELP)(evaluate)
