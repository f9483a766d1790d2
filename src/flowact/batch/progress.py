"""Batch progress on stderr: an overall bar (jobs done / total, ETA, aggregate real-time
factor), a bar per running job (chunks), and one line per finished job, which is all that
shows when stderr is not a terminal (logs)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .job import JobResult

STYLE = {"ok": "green", "skipped": "cyan", "failed": "red"}


class BatchProgress:
    def __init__(self, console: Console, total: int, workers: int = 1):
        self.console, self.total, self.workers = console, total, workers
        self.t0 = time.perf_counter()
        self.done = 0
        self.rendered_wall = 0.0  # wall seconds of rendered jobs (not skipped/failed ones)
        self.rendered = 0
        self.video_seconds = 0.0
        self.counts = {"ok": 0, "skipped": 0, "failed": 0}
        self._lock = threading.Lock()
        self._tasks: dict[int, int] = {}
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
            disable=not console.is_terminal,
        )
        self.overall = self.bar.add_task("batch", total=total, info="")

    def __enter__(self) -> "BatchProgress":
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def chunk(self, line: int, done: int, total: int) -> None:
        with self._lock:
            if line not in self._tasks:
                self._tasks[line] = self.bar.add_task(f"  line {line}", total=total, info="chunks")
            self.bar.update(self._tasks[line], completed=done, total=total)

    def eta(self) -> float | None:
        """Seconds left: mean wall time of a rendered job times the jobs left, over the workers."""
        if not self.rendered:
            return None
        return self.rendered_wall / self.rendered * (self.total - self.done) / self.workers

    def rtf(self) -> float:
        """Aggregate real-time factor: video seconds made / batch wall seconds so far."""
        return self.video_seconds / max(time.perf_counter() - self.t0, 1e-9)

    def finish(self, r: JobResult) -> None:
        with self._lock:
            self.done += 1
            self.counts[r.status] += 1
            if r.status == "ok":
                self.rendered += 1
                self.rendered_wall += r.wall_seconds
                self.video_seconds += r.seconds
            task = self._tasks.pop(r.line, None)
            if task is not None:
                self.bar.remove_task(task)
            eta = self.eta()
            info = f"ETA {_clock(eta)}  RTF {self.rtf():.2f}"
            self.bar.update(self.overall, completed=self.done, info=info)
            width = len(str(self.total))
            what = (
                f"{r.frames} frames, {r.seconds:.2f} s in {r.wall_seconds:.1f} s (RTF {r.realtime_factor:.2f})"
                if r.status == "ok"
                else (f"complete, {r.frames} frames" if r.status == "skipped" else r.error)
            )
            name = Path(r.output).name if r.output else f"line {r.line}"
            self.console.print(
                f"[{self.done:>{width}}/{self.total}] [{STYLE[r.status]}]{r.status:<7}[/] "
                f"{escape(name)}: {escape(str(what))}  |  {info}",
                highlight=False,
            )
            if r.traceback:
                self.console.print(escape(r.traceback.rstrip()), highlight=False)

    def summary(self, interrupted: bool) -> str:
        c = self.counts
        return (
            f"batch{' interrupted' if interrupted else ''}: {c['ok']} rendered, {c['skipped']} skipped "
            f"(complete), {c['failed']} failed, of {self.total} jobs in {time.perf_counter() - self.t0:.1f} s; "
            f"{self.video_seconds:.1f} s of video, aggregate RTF {self.rtf():.2f}"
        )


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "-:--"
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
