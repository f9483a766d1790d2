"""Batch rendering: one model load per preset, many jobs (`flowact render --manifest`).

    jobs = read_manifest("jobs.jsonl", Defaults(preset="toon-128"))
    outcome = run_batch(jobs, BatchOptions(), on_result=print)
    outcome = run_batch(jobs, BatchOptions(), ray=RayOptions("auto"), on_result=print)  # on a Ray cluster

Exit codes of the CLI: 0 every job rendered or already complete; 2 some job failed on bad
input (or a malformed manifest line); 1 some job failed on an unexpected error (a bug);
130 interrupted (Ctrl-C / SIGTERM: running jobs stop, their partial files are removed). On Ray
(farm.py), a job whose worker died more times than it may be retried fails as a bug: exit 1.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

from ..cli_common import warn_random
from ..errors import FlowactError, sigterm_as_interrupt
from .farm import RayOptions, import_ray, run_farm
from .job import BatchOptions, JobResult, partial_path, run_job
from .manifest import Defaults, Job, parse_manifest, read_manifest
from .progress import BatchProgress
from .schedule import run_here, run_pool

__all__ = [
    "BatchOptions",
    "Defaults",
    "Job",
    "JobResult",
    "Outcome",
    "RayOptions",
    "cli_manifest",
    "parse_manifest",
    "partial_path",
    "read_manifest",
    "run_batch",
    "run_job",
]


@dataclass
class Outcome:
    results: list[JobResult] = field(default_factory=list)  # in completion order
    interrupted: bool = False

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        if any(r.bug for r in self.results):
            return 1
        return 2 if any(r.status == "failed" for r in self.results) else 0


def run_batch(
    jobs: list[Job],
    options: BatchOptions,
    *,
    workers: int = 1,
    overlap: bool = True,
    stop: threading.Event | None = None,
    on_result=None,
    on_chunk=None,
    on_load=None,
    ray: RayOptions | None = None,
    on_worker=None,
    notice=None,
) -> Outcome:
    """Run every job; bad jobs are reported and skipped. `workers` > 1 uses that many
    processes; `ray` runs the jobs on Ray actors instead (`on_worker`, `notice`: farm.run_farm).
    `stop` (optional) ends the batch like Ctrl-C does."""
    stop = stop or threading.Event()
    outcome = Outcome()
    lock = threading.Lock()

    def result(r: JobResult) -> None:
        with lock:
            outcome.results.append(r)
            if on_result:
                on_result(r)

    workers = max(1, min(workers, len(jobs)))
    if ray is not None:
        outcome.interrupted = run_farm(
            jobs,
            options,
            ray,
            stop,
            on_result=result,
            on_chunk=on_chunk,
            on_load=on_load,
            on_worker=on_worker,
            notice=notice,
        )
    elif workers == 1:
        outcome.interrupted = run_here(
            jobs, options, stop, overlap=overlap, on_result=result, on_chunk=on_chunk, on_load=on_load
        )
    else:
        outcome.interrupted = run_pool(
            jobs, options, workers, stop, on_result=result, on_chunk=on_chunk, on_load=on_load
        )
    return outcome


def cli_manifest(
    *,
    manifest: str,
    out_dir: Path | None,
    force: bool,
    jobs: int | None,
    as_json: bool,
    preset: str,
    seed: int,
    prompt: str,
    device: str,
    dtype: str | None,
    weights: Path | None,
    random_weights: bool,
    fit: str,
    ffmpeg: str | None,
    threads: int | None,
    max_seconds: float | None,
    console,
    int8: str = "auto",
    ray: str | None = None,
    ray_cpus: float = 1.0,
) -> int:
    """`flowact render --manifest`: returns the exit code. `ray`: an address for --ray (or None)."""
    from ..media.ffmpeg import find_ffmpeg
    from ..routes import pick_device

    if jobs is not None and jobs < 1:
        raise FlowactError(f"--jobs must be at least 1 (got {jobs})")
    farm = None
    if ray is not None:
        if not ray_cpus > 0:
            raise FlowactError(f"--ray-cpus must be more than 0 (got {ray_cpus})")
        import_ray()  # fail before any work when Ray is not installed
        farm = RayOptions(address=ray, actors=jobs, cpus=ray_cpus)
    if fit not in ("cover", "contain"):
        raise FlowactError(f"unknown --fit '{fit}' (use cover or contain)")
    find_ffmpeg(ffmpeg)  # every job needs it: fail once, up front
    if farm is None:
        pick_device(device)  # on Ray, the workers' devices count (checked there)
    if out_dir is not None:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FlowactError(f"cannot create output folder ({exc.strerror or exc})", path=out_dir) from exc
    job_list = read_manifest(manifest, Defaults(preset=preset, seed=seed, prompt=prompt, out_dir=out_dir))
    if not job_list:
        console.print("flowact: the manifest has no jobs; nothing to do")
        return 0
    options = BatchOptions(
        device=device,
        dtype=dtype,
        weights=weights,
        random_weights=random_weights,
        weights_seed=seed,
        fit=fit,
        ffmpeg=ffmpeg,
        threads=threads,
        max_seconds=max_seconds,
        force=force,
        int8=int8,
    )
    workers = max(1, min(jobs or 1, len(job_list)))  # on Ray: a guess for the ETA until the actors are up
    warned: set[str] = set()

    def on_load(name: str, source, dev: str) -> None:
        if name not in warned:
            warned.add(name)
            warn_random(console, source, name)

    progress = BatchProgress(console, len(job_list), workers)

    def on_worker(slot: int, info: dict) -> None:
        progress.workers = max(progress.workers, slot + 1)
        what = f"ray: worker {slot} up (pid {info['pid']} on {info['host']}, {info['device']})"
        console.print(what, highlight=False, markup=False)

    results = sys.stdout  # the JSON lines' only: anything else printed during the batch goes to stderr

    def on_result(r: JobResult) -> None:
        progress.finish(r)
        if as_json:
            print(json.dumps(r.to_json()), file=results, flush=True)  # one line per job, as it completes

    stop = threading.Event()
    previous = sigterm_as_interrupt()
    try:
        with progress, redirect_stdout(sys.stderr):  # e.g. Ray prints its workers' news to stdout
            outcome = run_batch(
                job_list,
                options,
                workers=workers,
                stop=stop,
                on_result=on_result,
                on_chunk=progress.chunk,
                on_load=on_load,
                ray=farm,
                on_worker=on_worker,
                notice=lambda text: console.print(text, highlight=False, markup=False),
            )
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    console.print(progress.summary(outcome.interrupted))
    return outcome.exit_code
