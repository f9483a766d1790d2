"""The command line: parse, call the library, print. Thin by design."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from . import cli_live, cli_serve, cli_train, cli_world
from .allocator import keep_freed_memory
from .config import DEFAULT_PRESET
from .errors import FlowactError, sigterm_as_interrupt
from .cli_common import (
    DeviceOpt,
    DtypeOpt,
    FaceOpt,
    Fit,
    Int8Mode,
    Int8Opt,
    NoLipsOpt,
    PresetOpt,
    RoutePresetOpt,
    RandomWeightsOpt,
    ThreadsOpt,
    WeightsOpt,
    emit_json,
    load_route,
    stderr_console,
)

app = typer.Typer(
    name="flowact",
    help="Real-time talking-humanoid video from one picture and a speech track (FlowAct-R1).\n\n"
    "Start with:  flowact render --image examples/character_1.png --audio examples/speech_en.wav\n\n"
    "Every command has --help with examples. Docs: README.md and docs/ in the repository.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
err = stderr_console()
out_console = Console(width=None if sys.stdout.isatty() else 160)  # tables stay readable in pipes and logs
cli_world.register(app)
cli_live.register(app)
cli_serve.register(app)
cli_train.register(app)


def _progress(total_label: str):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn(total_label),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[speed]}"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
        disable=not err.is_terminal,
    )


@app.command()
def render(
    image: Optional[Path] = typer.Option(
        None, "--image", "-i", help="Reference picture (png/jpg/webp, any size; alpha and grayscale are fine)."
    ),
    audio: Optional[Path] = typer.Option(
        None, "--audio", "-a", help="Speech track (wav/flac/ogg/mp3, any rate, mono or stereo)."
    ),
    out: Optional[str] = typer.Option(
        None,
        "--out",
        "-o",
        help=(
            "Output .mp4, or '-' for a fragmented mp4 on stdout. Default: the audio file's name with "
            ".flowact.mp4 (talk.wav -> talk.flowact.mp4)."
        ),
    ),
    prompt: str = typer.Option("", "--prompt", "-p", help="Behaviour prompt, e.g. 'speaking calmly', 'wave hello'."),
    preset: RoutePresetOpt = "auto",
    seed: int = typer.Option(0, "--seed", help="Noise seed: the same seed and inputs give the same video."),
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = None,
    weights: WeightsOpt = None,
    random_weights: RandomWeightsOpt = False,
    no_lips: NoLipsOpt = False,
    int8: Int8Opt = Int8Mode.auto,
    fit: Fit = typer.Option(
        Fit.cover,
        "--fit",
        help="How the picture fills the frame: cover (scale, crop centre, keep the upper part) | contain (scale, pad).",
    ),
    face: FaceOpt = None,
    motion: Optional[Path] = typer.Option(
        None,
        "--motion",
        help="Drive the picture with this per-frame motion track (.npy, .csv or .jsonl; 16 numbers a frame, or "
        "24 with the arms; docs/usage.md) instead of the motion engine. Photo route and toon-128.",
    ),
    max_seconds: Optional[float] = typer.Option(
        None, "--seconds", help="Render only the first S seconds of the audio."
    ),
    threads: ThreadsOpt = None,
    ffmpeg: Optional[str] = typer.Option(
        None, "--ffmpeg", help="ffmpeg binary to use (default: imageio-ffmpeg's, or $FLOWACT_FFMPEG)."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print a JSON summary (to stderr when --out -); with --manifest one line per job."
    ),
    manifest: Optional[str] = typer.Option(
        None,
        "--manifest",
        rich_help_panel="Batch (--manifest)",
        help=(
            "Batch: JSON lines, or CSV with a header (image, audio[, out, prompt, seed, preset]) or "
            "without one (that column order); '-' reads stdin."
        ),
    ),
    out_dir: Optional[Path] = typer.Option(
        None,
        "--out-dir",
        rich_help_panel="Batch (--manifest)",
        help="Batch: folder for outputs of jobs without an 'out' column.",
    ),
    force: bool = typer.Option(
        False,
        "--force",
        rich_help_panel="Batch (--manifest)",
        help="Batch: redo jobs whose complete output already exists.",
    ),
    jobs: Optional[int] = typer.Option(
        None,
        "--jobs",
        rich_help_panel="Batch (--manifest)",
        help="Batch: worker processes, one model each (default 1); with --ray, Ray actors (default: one per GPU "
        "of the cluster, else one per --ray-cpus CPUs).",
    ),
    ray: Optional[str] = typer.Option(
        None,
        "--ray",
        metavar="ADDRESS",
        rich_help_panel="Batch (--manifest)",
        help="Batch on a Ray cluster (pip install flowact[ray]): 'local' starts Ray on this machine, 'auto' joins "
        "the cluster this machine is part of, HOST:6379 or ray://HOST:10001 connects to one. Inputs go to the "
        "workers and videos come back: no shared filesystem needed.",
    ),
    ray_cpus: float = typer.Option(
        1.0, "--ray-cpus", rich_help_panel="Batch (--manifest)", help="Batch on Ray: CPUs each actor reserves."
    ),
    seq_parallel: bool = typer.Option(
        False,
        "--seq-parallel",
        rich_help_panel="Several GPUs (under torchrun)",
        help="One chunk over all torchrun ranks: sequence parallelism, the heads split over the ranks.",
    ),
    decode_rank: bool = typer.Option(
        False,
        "--decode-rank",
        rich_help_panel="Several GPUs (under torchrun)",
        help="With --seq-parallel: the last rank only decodes and writes, while the others make the next chunk.",
    ),
):
    """Stream a talking video of the character in IMAGE speaking AUDIO.

    The file is written live, chunk by chunk (0.32 s of video each), and always finalised:
    Ctrl-C leaves a playable video of what was made (exit code 130). The picture picks the
    route (--preset auto): a photograph moves its own face (photo-512, the photo's framing up
    to 512x512), a drawn character is drawn by the video model (toon-128).

    Examples:

        flowact render --image examples/character_1.png --audio examples/speech_en.wav

        flowact render --image examples/astronaut.jpg --audio examples/human_speech.wav

        flowact render -i face.jpg -a talk.mp3 -o talk.mp4 --prompt "speaking calmly" --json

        flowact render -i face.png -a talk.wav --out - | ffplay -

        flowact render -i face.jpg -a talk.wav --motion track.csv -o driven.mp4

        find faces -name '*.png' | sed 's/.*/{"image": "&", "audio": "talk.wav"}/' \\
            | flowact render --manifest - --out-dir out --json

        flowact render --manifest jobs.jsonl --out-dir out --ray auto

        torchrun --nproc-per-node 3 -m flowact.cli render -i face.png -a talk.wav --seq-parallel --decode-rank
    """
    if manifest is not None:
        if motion is not None or face is not None:
            raise FlowactError(
                "--motion and --face go with --image and --audio (one render), not --manifest (a manifest line "
                'takes "face": N)'
            )
        from .batch import cli_manifest

        code = cli_manifest(
            manifest=manifest,
            out_dir=out_dir,
            force=force,
            jobs=jobs,
            as_json=as_json,
            preset=preset,
            seed=seed,
            prompt=prompt,
            device=device,
            dtype=dtype,
            weights=weights,
            random_weights=random_weights,
            fit=fit.value,
            ffmpeg=ffmpeg,
            threads=threads,
            max_seconds=max_seconds,
            console=err,
            int8=int8.value,
            ray=ray,
            ray_cpus=ray_cpus,
        )
        raise typer.Exit(code)
    if image is None or audio is None:
        raise FlowactError("render needs --image and --audio (or --manifest for a batch)")
    from .config import load_preset
    from .media.ffmpeg import check_output, find_ffmpeg
    from .routes import load_inputs

    sigterm_as_interrupt()
    out = out if out is not None else f"{audio.stem}.flowact.mp4"
    # every input is checked before the model loads: bad input fails in milliseconds
    from .routes.choose import route_preset

    preset, why = route_preset(preset, image)
    p = load_preset(preset)
    if why.startswith("auto"):
        err.print(f"route: {p.name} ({why}; --preset forces one)")
    inputs = load_inputs(p, image, audio, fit.value, motion, face)
    check_output(out)
    find_ffmpeg(ffmpeg)
    if decode_rank and not seq_parallel:
        raise FlowactError("--decode-rank goes with --seq-parallel")
    if seq_parallel:
        _render_seq_parallel(p, inputs, out, prompt, seed, device, dtype, weights, random_weights, no_lips, int8,
                             max_seconds, threads, ffmpeg, as_json, decode_rank)  # fmt: skip
        return
    from .render import render as render_video

    route = load_route(err, p, device, dtype, weights, random_weights, seed, threads, int8, lips=not no_lips)
    with _progress(f"rendering {Path(out).name if out != '-' else 'stdout'}") as bar:
        task = bar.add_task("render", total=None, speed="")

        def on_chunk(ev):
            rtf = (ev.frames_done / route.preset.video.fps) / max(ev.elapsed, 1e-9)
            bar.update(
                task,
                total=ev.chunks,
                completed=ev.index + 1,
                speed=f"{ev.frames_done / ev.elapsed:.1f} fps  RTF {rtf:.2f}",
            )

        report = render_video(
            route,
            None,
            None,
            out,
            prompt=prompt,
            seed=seed,
            fit=fit.value,
            ffmpeg=ffmpeg,
            max_seconds=max_seconds,
            on_chunk=on_chunk,
            inputs=inputs,
        )
    summary = report.to_dict()
    if as_json:
        emit_json(summary, to_stderr=(out == "-"))
    else:
        ttff = f"{report.ttff_seconds:.2f} s" if report.ttff_seconds is not None else "n/a"
        err.print(
            f"{'[yellow]interrupted[/]: ' if report.interrupted else ''}wrote {report.frames} frames "
            f"({report.video_seconds:.2f} s) to {out}  |  TTFF {ttff}  |  {report.e2e_fps:.1f} fps  |  "
            f"RTF {report.realtime_factor:.2f}  |  {report.conditions}"
        )
    if report.interrupted:
        raise typer.Exit(130)


def _render_seq_parallel(p, inputs, out, prompt, seed, device, dtype, weights, random_weights, no_lips, int8,
                         max_seconds, threads, ffmpeg, as_json, decode_rank):  # fmt: skip
    """`render --seq-parallel` on one torchrun rank; the writing rank prints the summary."""
    import os

    from .render_seqpar import init_ranks, render_seq_parallel

    dev = init_ranks(device)
    world = int(os.environ["WORLD_SIZE"])
    threads = threads or (max(1, (os.cpu_count() or 1) // world) if dev == "cpu" else None)
    console = err if os.environ["RANK"] == "0" else Console(stderr=True, quiet=True)  # one warning, not one a rank
    # dynamic int8 scales activations per call, i.e. per rank's shard: only on request
    int8 = Int8Mode.off if int8 == Int8Mode.auto else int8
    route = load_route(console, p, dev, dtype, weights, random_weights, seed, threads, int8, lips=not no_lips)
    r = render_seq_parallel(
        route, inputs, out, prompt=prompt, seed=seed, max_seconds=max_seconds, ffmpeg=ffmpeg, decode_rank=decode_rank
    )
    if r is None:
        return
    if as_json:
        emit_json(r, to_stderr=(out == "-"))
    else:
        ttff = f"{r['ttff_seconds']:.2f} s" if r["ttff_seconds"] is not None else "n/a"
        err.print(
            f"wrote {r['frames']} frames ({r['video_seconds']:.2f} s) to {out}  |  TTFF {ttff}  |  "
            f"RTF {r['realtime_factor']:.2f}  |  {r['conditions']}"
        )


@app.command()
def bench(
    preset: PresetOpt = DEFAULT_PRESET,
    seconds: float = typer.Option(10.0, "--seconds", help="Seconds of video in the measured run."),
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = None,
    weights: WeightsOpt = None,  # speed does not depend on the values
    random_weights: RandomWeightsOpt = False,
    no_lips: NoLipsOpt = False,
    int8: Int8Opt = Int8Mode.auto,
    threads: ThreadsOpt = None,
    seed: int = typer.Option(0, "--seed"),
    as_json: bool = typer.Option(False, "--json", help="Print the full JSON report."),
):
    """Measure time-to-first-frame, fps and real-time factor of a preset.

    One warm-up render (excluded), then SECONDS of speech-like audio rendered into a real
    H.264 file. Reports TTFF (warm, request to first frame written), generator fps,
    end-to-end fps and RTF (decode and encode included), per-chunk latency p50/p95/max,
    per-stage times and peak memory, with the conditions (device, dtype, threads, compile).

    Examples:

        flowact bench --json

        flowact bench --preset r1-480p --random-weights --device cuda
    """
    from .bench import run_bench

    route = load_route(err, preset, device, dtype, weights, random_weights, seed, threads, int8, lips=not no_lips)
    with _progress(f"bench {route.preset.name}") as bar:
        task = bar.add_task("bench", total=None, speed="")
        r = run_bench(
            route,
            seconds=seconds,
            seed=seed,
            on_chunk=lambda ev: bar.update(task, total=ev.chunks, completed=ev.index + 1, speed=""),
        )
    if as_json:
        emit_json(r)
        return
    t = Table(title=f"flowact bench: {r['preset']} ({r['conditions']})")
    t.add_column("metric")
    t.add_column("value", justify="right")
    lat = r["chunk_latency_ms"]
    rows = (
        [
            ("TTFF (warm, request -> first frame written)", f"{r['ttff_seconds']:.3f} s"),
            ("end-to-end fps (generate + decode + encode)", f"{r['e2e_fps']:.1f}"),
            ("real-time factor (>= 1 is real time)", f"{r['realtime_factor']:.2f}"),
            ("generator fps (transformer only)", f"{r['generator_fps']:.1f}"),
            (
                "chunk latency p50 / p95 / max",
                f"{lat['p50']} / {lat['p95']} / {lat['max']} ms (chunk = {r['chunk_video_ms']:.0f} ms of video)",
            ),
            (
                "chunk latency 1st half / 2nd half median",
                f"{lat['first_half_median']} / {lat['second_half_median']} ms",
            ),
        ]
        + [(f"stage: {k} (thread time)", f"{v:.3f} s") for k, v in r["stages"].items()]
        + [
            ("peak memory", f"{r['peak_memory_mb']:.0f} MB"),
            ("frames", str(r["frames"])),
            ("weights", r["weights"]),
            ("warm-up", r["warmup"]),
        ]
    )
    for k, v in rows:
        t.add_row(k, v)
    out_console.print(t)


@app.command()
def presets(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable list."),
    ranks: int = typer.Option(
        1,
        "--ranks",
        min=1,
        help="Also show one chunk on R sequence-parallel ranks: FLOPs, memory, all-to-all per rank.",
    ),
):
    """List presets: resolution, fps, chunk, steps, parameters, FLOPs per chunk, weights.

    Example:  flowact presets --ranks 4
    """
    from .config import load_preset, preset_names
    from .routes import route_of

    rows = []
    for name in preset_names():
        p = load_preset(name)
        w = p.weights
        source = f"bundled {w.bundled}" if w.bundled else (f"hub {w.hub.repo}" if w.hub else "none yet (random)")
        row = {"name": name, "route": p.route, "default": name == DEFAULT_PRESET, "description": p.description}
        rows.append(row | route_of(p).facts(p, ranks) | {"weights": source, "where": p.where})
    if as_json:
        emit_json({"presets": rows})
        return
    t = Table(title="flowact presets (FLOPs: NFE passes + memory pass + VAE decode and lip refiner, per chunk)")
    for col in (
        "preset",
        "size",
        "fps",
        "chunk",
        "steps",
        "params",
        "GFLOP/chunk",
        "real time needs",
        "weights",
        "runs on",
    ):
        t.add_column(col)
    for r in rows:
        c = r["cells"]  # the route's own words for its size, chunk, parameters and cost
        name = r["name"] + (" (default)" if r["default"] else "")
        t.add_row(name, c["size"], str(r["fps"]), c["chunk"], str(r["steps"]), c["params"], c["cost"], c["needs"],
                  r["weights"], r["where"])  # fmt: skip
    out_console.print(t)
    if ranks > 1:
        out_console.print(_seq_parallel_table(rows, ranks))


def _seq_parallel_table(rows: list[dict], ranks: int) -> Table:
    t = Table(
        title=f"one chunk on {ranks} sequence-parallel ranks, per rank (the busiest; the VAE decode runs on one rank)",
        caption="memory: the transformer's weights (every rank) + its bank shard (1/ranks of the heads), "
        "in the preset's GPU dtype; all-to-all: the bytes it sends to the other ranks; n/a: the heads do not "
        "divide by the ranks",
    )
    for col in (
        "preset",
        "GFLOP/chunk",
        "all ranks / 1 (a pass)",
        "weights GB",
        "bank GB",
        "all-to-all MB/chunk",
        "for real time",
    ):
        t.add_column(col)
    for r in rows:
        sp = r["seq_parallel"]
        if "error" in sp:
            why = f"{sp['heads']} heads" if "heads" in sp else sp["error"]
            t.add_row(r["name"], f"n/a: {why}", "", "", "", "", "")
            continue
        sent = max(sp["sent_bytes_per_chunk"])
        t.add_row(
            r["name"],
            f"{max(sp['flops_per_chunk']) / 1e9:,.0f}",
            f"{sum(sp['flops_per_pass']) / r['flops_per_pass']:.4f}",
            f"{sp['dit_weight_bytes'] / 1e9:.2f} ({sp['dtype']})",
            f"{sp['bank_bytes'] / 1e9:.3f}",
            f"{sent / 1e6:,.1f}",
            f"{sent / (r['chunk_ms'] / 1000) / 1e9:.2f} GB/s",
        )
    return t


@app.command()
def download(
    preset: str = typer.Option(DEFAULT_PRESET, "--preset", help="Preset whose published weights to fetch."),
    cache_dir: Optional[str] = typer.Option(None, "--cache-dir", help="huggingface-hub cache folder."),
    as_json: bool = typer.Option(False, "--json"),
):
    """Fetch a preset's published weights from the hub into the local cache (sha256-checked).

    Example:  flowact download --preset r1-480p
    """
    from . import weights as W
    from .config import load_preset

    p = load_preset(preset)
    if p.weights.hub is None:
        msg = f"preset '{p.name}' publishes no hub weights" + (
            " (its weights ship in the package)" if p.weights.bundled else ""
        )
        if as_json:
            emit_json({"preset": p.name, "path": None, "message": msg})
        else:
            err.print(msg)
        return
    path = W.hub_fetch(p.weights.hub, p.name, cache_dir)
    if as_json:
        emit_json({"preset": p.name, "path": str(path)})
    else:
        print(path)


def main() -> None:
    keep_freed_memory()  # frame-sized buffers reused, not page-faulted in afresh every frame (allocator.py)
    try:
        app()
    except FlowactError as exc:
        print(f"flowact: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("flowact: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
