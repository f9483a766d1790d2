"""The manifest: one job per line, JSON lines or CSV, read from a file or stdin.

JSON lines: `{"image": "a.png", "audio": "a.wav", "prompt": "...", "out": "a.mp4", "seed": 3, "preset": "toon-128"}`,
and `"face": 2` for the second face from the left of a group photo (as `--face`).
CSV: a header row naming the columns (any order), or no header and the columns in the
order `image,audio,out,prompt,seed,preset,face` (trailing ones may be left out). The format is
told by the first job line: `{` starts JSON lines. Blank lines and `#` comments are skipped.

A malformed line does not stop the batch: it becomes a `Job` with `error` set, reported
as a failed job with its line number. Only a manifest that cannot be read at all (missing
file, CSV header with an unknown column) is a `FlowactError` for the whole batch.
"""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from ..config import DEFAULT_PRESET
from ..errors import FlowactError
from ..routes.choose import AUTO, route_preset

COLUMNS = ("image", "audio", "out", "prompt", "seed", "preset", "face")  # also the order of a CSV without header


@dataclass(frozen=True)
class Defaults:
    """CLI-level values a manifest line may override."""

    preset: str
    seed: int = 0
    prompt: str = ""
    out_dir: Path | None = None


@dataclass(frozen=True)
class Job:
    line: int  # 1-based line in the manifest
    image: str
    audio: str
    out: str  # the final output path; only a complete video ever appears under it
    prompt: str = ""
    seed: int = 0
    preset: str = ""
    error: str | None = None  # a malformed line: reported as a failed job
    face: int | None = None  # which face of a group photo, 1-based left to right (None: the most confident)


def read_manifest(source: str, defaults: Defaults) -> list[Job]:
    """Jobs from a manifest file, or stdin when `source` is '-'."""
    if source == "-":
        return parse_manifest(sys.stdin.read(), defaults, name="stdin")
    path = Path(source)
    if not path.is_file():
        raise FlowactError("manifest file not found" if not path.exists() else "manifest is not a file", path=path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise FlowactError(f"cannot read manifest ({exc})", path=path) from exc
    return parse_manifest(text, defaults, name=str(path))


def parse_manifest(text: str, defaults: Defaults, name: str = "manifest") -> list[Job]:
    lines = [(n, raw.strip()) for n, raw in enumerate(text.splitlines(), 1)]
    lines = [(n, s) for n, s in lines if s and not s.startswith("#")]
    if not lines:
        return []
    rows = _json_rows(lines) if lines[0][1].startswith("{") else _csv_rows(lines, name)
    jobs, owner = [], {}
    for n, row in rows:
        job = _job(n, row, defaults)
        if job.error is None:
            key = str(Path(job.out).resolve())
            if key in owner:
                job = _failed(n, row, job.out, f"output {job.out} is also the output of line {owner[key]}")
            else:
                owner[key] = n
        jobs.append(job)
    return jobs


def _json_rows(lines):
    for n, s in lines:
        try:
            row = json.loads(s)
        except json.JSONDecodeError as exc:
            yield n, f"invalid JSON ({exc.msg} at column {exc.colno})"
            continue
        yield n, row if isinstance(row, dict) else f"expected a JSON object, got {type(row).__name__}"


def _csv_rows(lines, name):
    first = [c.strip().lower() for c in next(csv.reader([lines[0][1]]))]
    header = "image" in first and "audio" in first
    if header:
        unknown = [c for c in first if c not in COLUMNS]
        if unknown:
            raise FlowactError(
                f"line {lines[0][0]}: unknown column '{unknown[0]}' (columns: {', '.join(COLUMNS)})", path=name
            )
        columns, lines = first, lines[1:]
    else:
        columns = list(COLUMNS)
    for n, s in lines:
        cells = next(csv.reader([s]))
        if len(cells) > len(columns):
            yield n, f"{len(cells)} fields, expected at most {len(columns)} ({','.join(columns)})"
            continue
        yield n, dict(zip(columns, cells))


def _failed(n: int, row, out: str, why: str) -> Job:
    get = row.get if isinstance(row, dict) else (lambda k: None)
    return Job(n, str(get("image") or ""), str(get("audio") or ""), out, error=f"manifest line {n}: {why}")


def _job(n: int, row, d: Defaults) -> Job:
    if isinstance(row, str):  # the line could not be parsed at all
        return _failed(n, {}, "", row)
    unknown = [k for k in row if k not in COLUMNS]
    if unknown:
        return _failed(n, row, "", f"unknown key '{unknown[0]}' (keys: {', '.join(COLUMNS)})")
    values = {}
    for key in COLUMNS:
        v = row.get(key)
        if isinstance(v, str):
            v = v.strip() or None
        if v is not None and key not in ("seed", "face") and not isinstance(v, str):
            return _failed(n, row, "", f"'{key}' must be a string, got {json.dumps(v)}")
        values[key] = v
    for key in ("image", "audio"):
        if not values[key]:
            return _failed(n, row, "", f"missing '{key}'")
    seed = values["seed"]
    if seed is None:
        seed = d.seed
    else:
        try:
            if isinstance(seed, bool) or (isinstance(seed, float) and not seed.is_integer()):
                raise ValueError
            seed = int(seed)
        except (TypeError, ValueError):
            return _failed(n, row, "", f"seed {json.dumps(seed)} is not an integer")
    face = values["face"]
    if face is not None:
        try:
            if isinstance(face, bool) or (isinstance(face, float) and not face.is_integer()) or int(face) < 1:
                raise ValueError
            face = int(face)
        except (TypeError, ValueError):
            return _failed(n, row, "", f"face {json.dumps(face)} is not a face number (1, 2, ... left to right)")
    out = values["out"]
    if out == "-":
        return _failed(n, row, "", "'out' cannot be '-' (stdout) in a batch")
    if out is None:
        # image and audio stems both: a batch often shares one of them across jobs
        out = f"{Path(values['image']).stem}-{Path(values['audio']).stem}.flowact.mp4"
    if d.out_dir is not None and not Path(out).is_absolute():
        out = str(d.out_dir / out)
    preset = values["preset"] or d.preset
    if preset == AUTO:  # the route follows the picture: a photograph -> photo-512, a drawn character -> toon-128
        try:
            preset = route_preset(AUTO, values["image"])[0]
        except FlowactError:  # an unreadable picture: the job's input check says so, as for any preset
            preset = DEFAULT_PRESET
    return Job(
        n,
        values["image"],
        values["audio"],
        out,
        values["prompt"] if values["prompt"] is not None else d.prompt,
        seed,
        preset,
        face=face,
    )
