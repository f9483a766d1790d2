"""`flowact render --manifest --ray`: the batch on a local Ray instance (2 CPUs, two actors),
the tiny preset, real files and ffmpeg. Ray is in the dev extra, so this runs in CI.

The farm must give what the local batch gives: the same videos byte for byte, the same JSON
lines, the same skip-complete and partial-file rules and exit codes; a worker killed midway
has its job retried on another actor and the batch still completes."""

import json
import os
import signal
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import ray  # the dev extra installs it: a missing Ray fails this file, it is not skipped

from flowact.batch import BatchOptions, Defaults, RayOptions, parse_manifest, run_batch
from flowact.batch.farm import FarmWorker
from flowact.media.audio import write_wav
from flowact.media.probe import probe
from helpers import TINY, make_inputs, run_cli

TIMING = ("wall_seconds", "realtime_factor")


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance for the file (it takes seconds to start)."""
    on_term = signal.getsignal(signal.SIGTERM)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    signal.signal(signal.SIGTERM, on_term)  # ray.init's handler would outlive the file
    yield ray
    ray.shutdown()


def _lines(stdout: str) -> dict[int, dict]:
    rows = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    return {r["line"]: {k: v for k, v in r.items() if k not in TIMING} for r in rows}


def _videos(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _wav(path: Path, seconds: float, rate: int = 16000) -> str:
    t = np.arange(int(seconds * rate)) / rate
    write_wav(path, 0.3 * np.sin(2 * np.pi * 190 * t) * (np.sin(2 * np.pi * 3 * t) > 0), rate)
    return str(path)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A manifest of four 1 s jobs and one bad one, and what the local batch makes of it."""
    folder = tmp_path_factory.mktemp("farm")
    img, wav = make_inputs(folder, seconds=1.0)
    rows = [{"image": str(img), "audio": str(wav), "out": f"v{i}.mp4", "seed": i} for i in range(4)]
    rows.append({"image": str(folder / "missing.png"), "audio": str(wav), "out": "bad.mp4"})
    manifest = folder / "jobs.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, stdout, stderr = run_cli(["render", "--manifest", str(manifest), "--preset", TINY] + _out(folder / "local"))
    assert code == 2, stderr
    return {"folder": folder, "manifest": manifest, "img": img, "wav": wav, "lines": _lines(stdout)}


def _out(folder: Path) -> list[str]:
    return ["--out-dir", str(folder), "--json"]


def test_farm_gives_the_local_batch_videos_and_lines_then_resumes(local_ray, reference):
    folder, manifest = reference["folder"], str(reference["manifest"])
    farm = folder / "farm"
    args = ["render", "--manifest", manifest, "--preset", TINY, "--ray", "local"] + _out(farm)

    code, stdout, stderr = run_cli(args)
    assert code == 2, stderr  # the bad job, as in the local batch
    lines = _lines(stdout)
    local = reference["lines"]
    assert lines == {n: {**r, "output": r["output"].replace("/local/", "/farm/")} for n, r in local.items()}
    assert lines[5]["status"] == "failed" and lines[5]["error"].endswith("missing.png: image file not found")
    assert [lines[n]["status"] for n in (1, 2, 3, 4)] == ["ok"] * 4
    assert _videos(farm) == _videos(folder / "local")  # byte for byte; no partial or bad file
    assert "ray: worker 0 up" in stderr and "ray: worker 1 up" in stderr  # two actors on two CPUs

    # rerun: every complete video is skipped by the driver, Ray is not even asked
    code, stdout, stderr = run_cli(args)
    assert code == 2 and "ray: worker" not in stderr, stderr
    assert {n: r["status"] for n, r in _lines(stdout).items()} == {1: "skipped", 2: "skipped", 3: "skipped"} | {
        4: "skipped",
        5: "failed",
    }

    # a cut-short file under a final name is redone; --force redoes them all
    whole = (farm / "v2.mp4").read_bytes()
    (farm / "v2.mp4").write_bytes(whole[:3000])
    code, stdout, stderr = run_cli(args)
    assert code == 2, stderr
    assert [r["status"] for _, r in sorted(_lines(stdout).items())] == ["skipped", "skipped", "ok", "skipped", "failed"]
    assert (farm / "v2.mp4").read_bytes() == whole and sorted(farm.glob(".*")) == []


def test_killed_worker_has_its_job_retried_and_the_batch_completes(local_ray, reference, tmp_path):
    img = reference["img"]
    # line 2 is long: it is still rendering on worker 1 when line 1 (short) is reported
    lengths = {"a": 0.5, "b": 3.0, "c": 1.0, "d": 1.0}
    text = "".join(f"{img},{_wav(tmp_path / f'{n}.wav', s)},{n}.mp4,,{i}\n" for i, (n, s) in enumerate(lengths.items()))

    def farm(folder: Path, retries: int):
        pids, notices, killed = {}, [], []

        def kill_once(r):
            if not killed:  # midway: one job reported, three to go
                killed.append(pids.get(1) or pids[0])
                os.kill(killed[0], signal.SIGKILL)

        outcome = run_batch(
            parse_manifest(text, Defaults(preset=TINY, out_dir=folder)),
            BatchOptions(),
            ray=RayOptions(retries=retries),
            on_worker=lambda slot, info: pids.setdefault(slot, info["pid"]),
            on_result=kill_once,
            notice=notices.append,
        )
        return outcome, notices, killed

    local = tmp_path / "local"
    local.mkdir()
    assert run_batch(parse_manifest(text, Defaults(preset=TINY, out_dir=local)), BatchOptions()).exit_code == 0

    retried = tmp_path / "retried"
    retried.mkdir()
    outcome, notices, killed = farm(retried, retries=2)
    assert killed and any("died running line" in n and "retrying it (1 of 2)" in n for n in notices), notices
    assert outcome.exit_code == 0 and sorted(r.line for r in outcome.results) == [1, 2, 3, 4]
    assert all(r.status == "ok" for r in outcome.results)
    assert _videos(retried) == _videos(local)  # every video, whole and identical

    # no retries left: the job fails as a bug (exit 1) and leaves no file; the others finish
    failing = tmp_path / "failing"
    failing.mkdir()
    outcome, notices, killed = farm(failing, retries=0)
    failed = [r for r in outcome.results if r.status == "failed"]
    assert killed and failed and outcome.exit_code == 1 and all(r.bug for r in failed)
    assert all("its Ray worker died (1 try; last:" in r.error for r in failed), failed
    assert any("no retries left" in n for n in notices)
    assert sorted(r.line for r in outcome.results) == [1, 2, 3, 4]
    assert sorted(_videos(failing)) == sorted(Path(r.output).name for r in outcome.results if r.status == "ok")
    assert all((failing / n).read_bytes() == (local / n).read_bytes() for n in _videos(failing))


def test_stop_ends_the_farm_like_ctrl_c(local_ray, reference, tmp_path):
    img = reference["img"]
    text = "".join(f"{img},{_wav(tmp_path / f'{i}.wav', 6.0)},{i}.mp4\n" for i in range(4))
    stop, chunks = threading.Event(), []

    def on_chunk(line, done, total):
        chunks.append(line)
        stop.set()  # first progress from a worker: Ctrl-C

    outcome = run_batch(
        parse_manifest(text, Defaults(preset=TINY, out_dir=tmp_path)),
        BatchOptions(),
        ray=RayOptions(),
        stop=stop,
        on_chunk=on_chunk,
    )
    assert chunks and outcome.interrupted and outcome.exit_code == 130
    stopped = [r for r in outcome.results if r.interrupted]
    assert stopped and all(r.error == "interrupted (partial output removed)" for r in stopped)
    assert all(r.status == "ok" for r in outcome.results if not r.interrupted)  # finished before the stop
    assert sorted(p.name for p in tmp_path.glob("*.mp4")) == sorted(
        Path(r.output).name for r in outcome.results if r.status == "ok"
    )
    assert sorted(tmp_path.glob(".*")) == []  # no partial file


def test_worker_renders_from_shipped_bytes_and_answers_in_driver_paths(tmp_path):
    """The actor class as a plain object: no shared filesystem, messages name the driver's files."""
    img, wav = make_inputs(tmp_path, seconds=0.5)
    from flowact.config import load_preset

    worker = FarmWorker(BatchOptions(), "cpu", 1)
    job = parse_manifest(f"{img},{wav},/nowhere/x.mp4\n", Defaults(preset=TINY))[0]
    files = {"image": ("ref.png", img.read_bytes()), "audio": ("speech.wav", wav.read_bytes())}
    r, data, loads = worker.render(job, load_preset(TINY), files)
    assert r.status == "ok" and r.output == "/nowhere/x.mp4" and r.image == str(img)
    out = tmp_path / "x.mp4"
    out.write_bytes(data)
    assert probe(out).frames == round(0.5 * 25) and [name for name, _, _ in loads] == [TINY]

    broken = {**files, "audio": ("speech.wav", b"RIFF" + bytes(300))}
    r, data, loads = worker.render(job, load_preset(TINY), broken)
    assert r.status == "failed" and data is None and not loads
    assert r.error.startswith(f"{wav}: ") and "flowact-farm-" not in r.error


def test_ray_missing_is_one_line_exit_2(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    img, wav = make_inputs(tmp_path, seconds=0.5)
    manifest = tmp_path / "jobs.csv"
    manifest.write_text(f"{img},{wav},a.mp4\n")
    code, stdout, stderr = run_cli(["render", "--manifest", str(manifest), "--preset", TINY, "--ray", "auto"])
    assert code == 2 and stdout == "" and not (tmp_path / "a.mp4").exists()
    assert stderr.strip() == "flowact: error: --ray needs Ray, which is not installed (pip install flowact[ray])"


def test_ray_is_an_extra_imported_only_for_a_farm():
    import subprocess
    import tomllib

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    assert not any(d.startswith("ray") for d in project["dependencies"])  # the default install has no Ray
    extras = project["optional-dependencies"]
    assert "ray>=2.9" in extras["ray"] and "ray>=2.9" in extras["dev"]  # CI installs dev: this file runs there
    code = "import sys, flowact.cli, flowact.batch, flowact.batch.farm; print('ray' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
