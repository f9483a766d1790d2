"""`flowact render --manifest --ray`: the batch on a local Ray instance (2 CPUs, two actors),
the tiny preset, real files and ffmpeg. Ray is in the dev extra, so this runs in CI.

The farm must give what the local batch gives: the same videos byte for byte, the same JSON
lines, the same skip-complete and partial-file rules and exit codes; a worker killed midway
has its job retried on another actor and the batch still completes."""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import ray  # the dev extra installs it: a missing Ray fails this file, it is not skipped

from flowact.batch import BatchOptions, Defaults, RayOptions, parse_manifest, read_manifest, run_batch
from flowact.batch.farm import FarmWorker
from flowact.errors import FlowactError
from flowact.media.audio import write_wav
from flowact.media.probe import probe
from helpers import TINY, make_inputs, run_cli

TIMING = ("wall_seconds", "realtime_factor")
PY = [sys.executable, "-c", "from flowact.cli import main; main()"]


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance for the file (it takes seconds to start)."""
    on_term, environ = signal.getsignal(signal.SIGTERM), dict(os.environ)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    signal.signal(signal.SIGTERM, on_term)  # ray.init's handler would outlive the file
    yield ray
    ray.shutdown()
    os.environ.clear()  # ray.init sets PYTHONBREAKPOINT and RAY_* here: later tests get the environment back
    os.environ.update(environ)


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


@pytest.fixture(scope="module")
def uneven(reference):
    """Four jobs, one long (still rendering when the first short one is reported), and the local
    batch's videos for them."""
    folder, img = reference["folder"], reference["img"]
    lengths = {"a": 0.5, "b": 3.0, "c": 1.0, "d": 1.0}
    manifest = folder / "uneven.csv"
    manifest.write_text(
        "".join(f"{img},{_wav(folder / f'{n}.wav', s)},{n}.mp4,,{i}\n" for i, (n, s) in enumerate(lengths.items()))
    )
    local = folder / "uneven-local"
    local.mkdir()
    assert run_batch(read_manifest(str(manifest), Defaults(preset=TINY, out_dir=local)), BatchOptions()).exit_code == 0
    return manifest, _videos(local)


def _wait_for(cond, proc, seconds: float = 120.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def test_cli_on_a_cluster_address_retries_a_killed_workers_job(local_ray, uneven, tmp_path):
    """A second driver process joins the running instance by its address, as on a real cluster;
    worker 1's process is SIGKILLed once the first job is reported: three jobs are left, so it
    is rendering one of them (or is about to be handed one)."""
    manifest, want = uneven
    address = local_ray.get_runtime_context().gcs_address
    log = tmp_path / "stderr.txt"
    args = ["render", "--manifest", str(manifest), "--preset", TINY, "--ray", address] + _out(tmp_path / "out")
    with log.open("w") as err:
        proc = subprocess.Popen(PY + args, stdout=subprocess.PIPE, stderr=err, text=True)
        first = proc.stdout.readline()
        up = lambda: re.search(r"ray: worker 1 up \(pid (\d+)", log.read_text())  # noqa: E731
        assert first and _wait_for(up, proc), log.read_text()
        killed = int(up().group(1))
        os.kill(killed, signal.SIGKILL)
        rest, _ = proc.communicate(timeout=300)
    stderr = log.read_text()
    assert proc.returncode == 0, stderr
    lines = [json.loads(line) for line in (first + rest).splitlines()]  # stdout holds only the JSON lines
    assert sorted(r["line"] for r in lines) == [1, 2, 3, 4] and all(r["status"] == "ok" for r in lines)
    assert re.search(r"ray: worker 1 \(pid \d+ on .*\) died running line \d \(.*\); retrying it \(1 of 2\)", stderr), (
        stderr
    )
    assert _videos(tmp_path / "out") == want  # every video, whole and identical to the local batch's
    assert list(Path(tempfile.gettempdir()).glob(f"flowact-farm-{killed}-*")) == []  # swept by its replacement


def test_job_whose_worker_dies_past_its_retries_fails_as_a_bug(local_ray, uneven, tmp_path):
    manifest, want = uneven
    pids, notices, killed = {}, [], []

    def kill_once(r):
        if not killed:  # midway: one job reported, three to go (one of them worker 1's)
            killed.append(pids.get(1) or pids[0])
            os.kill(killed[0], signal.SIGKILL)

    outcome = run_batch(
        read_manifest(str(manifest), Defaults(preset=TINY, out_dir=tmp_path)),
        BatchOptions(),
        ray=RayOptions(retries=0),
        on_worker=lambda slot, info: pids.setdefault(slot, info["pid"]),
        on_result=kill_once,
        notice=notices.append,
    )
    failed = [r for r in outcome.results if r.status == "failed"]
    assert killed and failed and outcome.exit_code == 1 and all(r.bug for r in failed)
    assert all("its Ray worker died (1 try; last:" in r.error for r in failed), failed
    assert any("no retries left" in n for n in notices), notices
    assert sorted(r.line for r in outcome.results) == [1, 2, 3, 4]  # the others still finish, on a new worker
    videos = _videos(tmp_path)
    assert sorted(videos) == sorted(Path(r.output).name for r in outcome.results if r.status == "ok")
    assert all(videos[n] == want[n] for n in videos)  # the failed job left no file, partial or final


def test_workers_that_cannot_start_end_the_batch_with_one_error(local_ray, reference, tmp_path, monkeypatch):
    """As when flowact is missing on the nodes: the actor's arguments need a module the workers
    cannot import (it is on the driver's path only)."""
    (tmp_path / "driver_only.py").write_text("class Weights:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import driver_only

    jobs = parse_manifest(f"{reference['img']},{reference['wav']},a.mp4\n", Defaults(preset=TINY, out_dir=tmp_path))
    notices, results = [], []
    with pytest.raises(FlowactError) as err:
        run_batch(
            jobs,
            BatchOptions(weights=driver_only.Weights()),
            ray=RayOptions(retries=1),
            notice=notices.append,
            on_result=results.append,
        )
    assert str(err.value) == (
        "no Ray worker could start (ModuleNotFoundError: No module named 'driver_only'); "
        "is flowact installed on every node?"
    )
    assert notices == [
        "ray: worker 0 failed to start (ModuleNotFoundError: No module named 'driver_only'); starting it again",
        "ray: worker 0 failed to start 2 times (ModuleNotFoundError: No module named 'driver_only'); giving up on it",
    ]
    assert results == [] and list(tmp_path.glob("*.mp4")) == []


def test_stop_ends_the_farm_like_ctrl_c(local_ray, reference, tmp_path):
    img = reference["img"]
    # 30 s jobs: tens of chunks, so the halt (polled every 0.5 s) lands before a running job's last
    # chunk on any machine; a job stopped only after its last chunk is whole and kept
    text = "".join(f"{img},{_wav(tmp_path / f'{i}.wav', 30.0)},{i}.mp4\n" for i in range(4))
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
    import tomllib

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    assert not any(d.startswith("ray") for d in project["dependencies"])  # the default install has no Ray
    extras = project["optional-dependencies"]
    assert "ray>=2.9" in extras["ray"] and "ray>=2.9" in extras["dev"]  # CI installs dev: this file runs there
    code = "import sys, flowact.cli, flowact.batch, flowact.batch.farm; print('ray' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


def test_scratch_of_a_killed_unreaped_actor_is_swept(tmp_path, monkeypatch):
    """A SIGKILLed actor stays a zombie until its parent reaps it; its scratch folder is swept
    anyway (the CI run that left one behind had a replacement that started before the reap)."""
    from flowact.batch import farm

    monkeypatch.setattr(farm.tempfile, "gettempdir", lambda: str(tmp_path))
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    alive = tmp_path / f"{farm.SCRATCH}{os.getpid()}-live"
    dead = tmp_path / f"{farm.SCRATCH}{child.pid}-dead"
    alive.mkdir(), dead.mkdir()
    farm._sweep_scratch()
    assert alive.exists() and dead.exists()  # both running: nothing swept
    child.kill()
    time.sleep(0.3)  # killed, not waited for: a zombie
    assert Path(f"/proc/{child.pid}").exists()
    farm._sweep_scratch()
    child.wait()
    assert alive.exists() and not dead.exists()
