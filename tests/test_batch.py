"""`flowact render --manifest`: real files, real ffmpeg, the tiny preset.

Covers the issue's closing checks: 2 bad jobs among 10 (8 videos, 2 clear errors, exit 2,
one model load), a batch interrupted (SIGINT) and killed (SIGKILL) midway that restarts
and finishes only the missing jobs with no partial file ever under a final name."""

import io
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from flowact.batch import BatchOptions, Defaults, parse_manifest, partial_path, read_manifest, run_batch
from flowact.errors import FlowactError
from flowact.media.audio import write_wav
from flowact.media.probe import probe, read_frames
from helpers import TINY, make_inputs, run_cli

PY = [sys.executable, "-c", "from flowact.cli import main; main()"]


def _wav(path: Path, seconds: float, rate: int = 16000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    write_wav(path, 0.3 * np.sin(2 * np.pi * 200 * t) * (np.sin(2 * np.pi * 3 * t) > 0), rate)
    return path


def _frames(seconds: float) -> int:
    return max(1, round(seconds * 25))


def _lines(stdout: str) -> dict[int, dict]:
    rows = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    return {r["line"]: r for r in rows}


def _partials(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.partial.mp4"))


def _count_loads(monkeypatch) -> list:
    from flowact import routes

    loads, original = [], routes.load_route

    def counting(*args, **kwargs):
        loads.append(args[0] if args else kwargs.get("preset"))
        return original(*args, **kwargs)

    monkeypatch.setattr(routes, "load_route", counting)
    return loads


def test_manifest_formats_and_malformed_lines(tmp_path):
    d = Defaults(preset="toon-128", seed=7, prompt="calm", out_dir=tmp_path)
    jsonl = "\n".join(
        [
            "# a comment",
            "",
            '{"image": "a.png", "audio": "x/a.wav"}',
            '{"image": "b.png", "audio": "b.wav", "out": "/abs/b.mp4", "seed": 3, "prompt": "wave", '
            '"preset": "tiny.yaml"}',
            '{"image": "c.png", "audio": ',
            '["c.png", "c.wav"]',
            '{"image": "c.png", "audio": "c.wav", "iamge": "typo"}',
            '{"image": "c.png"}',
            '{"image": "c.png", "audio": "c.wav", "seed": "x1"}',
            '{"image": "c.png", "audio": "c.wav", "out": "-"}',
            '{"image": "d.png", "audio": "a.wav"}',
            '{"image": "e.png", "audio": "e.wav", "out": "a-a.flowact.mp4"}',
        ]
    )
    jobs = {j.line: j for j in parse_manifest(jsonl, d)}
    assert sorted(jobs) == [3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    a, b = jobs[3], jobs[4]
    assert (a.out, a.seed, a.prompt, a.preset, a.error) == (
        str(tmp_path / "a-a.flowact.mp4"),
        7,
        "calm",
        "toon-128",
        None,
    )
    assert (b.out, b.seed, b.prompt, b.preset) == ("/abs/b.mp4", 3, "wave", "tiny.yaml")
    errors = {n: jobs[n].error for n in range(5, 13) if jobs[n].error}
    assert "manifest line 5: invalid JSON" in errors[5]
    assert "line 6: expected a JSON object" in errors[6]
    assert "unknown key 'iamge'" in errors[7]
    assert "missing 'audio'" in errors[8]
    assert 'seed "x1" is not an integer' in errors[9]
    assert "cannot be '-'" in errors[10]
    assert 11 not in errors  # d-a is its own name
    assert "also the output of line 3" in errors[12]

    csv_header = "audio,image,seed\nq.wav,p.png,5\n\n r.wav , s.png ,\nt.wav,u.png,1,extra\n"
    jobs = parse_manifest(csv_header, Defaults(preset="tiny"))
    assert [(j.line, j.image, j.audio, j.seed, j.out) for j in jobs[:2]] == [
        (2, "p.png", "q.wav", 5, "p-q.flowact.mp4"),
        (4, "s.png", "r.wav", 0, "s-r.flowact.mp4"),
    ]
    assert "4 fields, expected at most 3" in jobs[2].error
    positional = parse_manifest('f.png,f.wav,f.mp4,"hello, there",9\ng.png,g.wav\n', Defaults(preset="tiny"))
    assert [(j.image, j.audio, j.prompt, j.out, j.seed) for j in positional] == [
        ("f.png", "f.wav", "hello, there", "f.mp4", 9),
        ("g.png", "g.wav", "", "g-g.flowact.mp4", 0),
    ]
    with pytest.raises(FlowactError, match="line 1: unknown column 'imgae'"):
        parse_manifest("imgae,image,audio\n", Defaults(preset="tiny"))
    with pytest.raises(FlowactError, match="manifest file not found"):
        read_manifest(str(tmp_path / "none.jsonl"), d)
    assert partial_path("/o/x.flowact.mp4") == Path("/o/.x.flowact.partial.mp4")


def test_ten_jobs_two_bad_one_load_then_resume_and_force(tmp_path, monkeypatch):
    img, wav = make_inputs(tmp_path, seconds=0.5)
    bad_img = tmp_path / "broken.png"
    bad_img.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    bad_wav = tmp_path / "broken.wav"
    bad_wav.write_bytes(b"RIFF" + bytes(range(256)) * 8)
    rows = [{"image": str(img), "audio": str(wav), "out": f"v{i}.mp4", "seed": i} for i in range(8)]
    rows.insert(3, {"image": str(bad_img), "audio": str(wav), "out": "bad_image.mp4"})
    rows.insert(6, {"image": str(img), "audio": str(bad_wav), "out": "bad_audio.mp4"})
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "out"
    args = ["render", "--manifest", str(manifest), "--preset", TINY, "--out-dir", str(out), "--json"]
    loads = _count_loads(monkeypatch)

    code, stdout, stderr = run_cli(args)
    assert code == 2, stderr
    res = _lines(stdout)
    assert len(res) == 10 and len(stdout.strip().splitlines()) == 10
    ok = [r for r in res.values() if r["status"] == "ok"]
    failed = {r["line"]: r for r in res.values() if r["status"] == "failed"}
    assert len(ok) == 8 and sorted(failed) == [4, 7]
    assert "broken.png" in failed[4]["error"] and "image" in failed[4]["error"]
    assert "broken.wav" in failed[7]["error"] and "audio" in failed[7]["error"]
    assert len(loads) == 1  # one model for ten jobs; bad ones fail before any model work
    want = _frames(0.5)
    for r in ok:
        info = probe(r["output"])
        assert (info.video_codec, info.frames, info.audio_codec) == ("h264", want, "aac")
        assert r["frames"] == want and r["fps"] == 25 and r["error"] is None
        assert r["input"] == {"image": str(img), "audio": str(wav)}
    assert sorted(p.name for p in out.iterdir()) == sorted(f"v{i}.mp4" for i in range(8))  # no bad, no partial files
    assert "2 failed" in stderr and "8 rendered" in stderr and "broken.png" in stderr

    # the model reused across jobs (and the next job overlapping this one's encode) changes nothing
    from flowact.render import render
    from flowact.routes import load_route

    fresh = render(load_route(TINY), img, wav, tmp_path / "fresh.mp4", seed=5)
    assert fresh.frames == want
    assert np.array_equal(read_frames(out / "v5.mp4"), read_frames(tmp_path / "fresh.mp4"))
    assert not np.array_equal(read_frames(out / "v5.mp4"), read_frames(out / "v4.mp4"))  # seeds differ

    # resume: complete outputs are skipped without loading a model; a partial one is redone
    loads.clear()
    (out / "v2.mp4").write_bytes((out / "v2.mp4").read_bytes()[:3000])
    code, stdout, stderr = run_cli(args)
    res = _lines(stdout)
    assert code == 2, stderr
    assert [n for n, r in sorted(res.items()) if r["status"] == "skipped"] == [1, 2, 5, 6, 8, 9, 10]
    assert res[3]["status"] == "ok" and probe(out / "v2.mp4").frames == want
    assert all(res[n]["frames"] == want for n in (1, 2, 5))
    assert len(loads) == 1

    # --force redoes every job
    code, stdout, _ = run_cli(args + ["--force"])
    assert code == 2 and sum(r["status"] == "ok" for r in _lines(stdout).values()) == 8


def test_stdin_csv_with_two_worker_processes(tmp_path, monkeypatch):
    img, wav = make_inputs(tmp_path, seconds=0.6)
    long_wav = _wav(tmp_path / "long.wav", 1.0)
    out = tmp_path / "o"
    csv = (
        f"image,audio,out,seed\n{img},{wav},a.mp4,1\n{img},{long_wav},b.mp4,2\n"
        f"{img},{tmp_path / 'nope.wav'},c.mp4,3\n{img},{wav},d.mp4,1\n"
    )
    monkeypatch.setattr(sys, "stdin", io.StringIO(csv))
    code, stdout, stderr = run_cli(
        ["render", "--manifest", "-", "--preset", TINY, "--out-dir", str(out), "--jobs", "2", "--json"]
    )
    assert code == 2, stderr
    res = _lines(stdout)
    assert [res[n]["status"] for n in (2, 3, 4, 5)] == ["ok", "ok", "failed", "ok"]
    assert "nope.wav: audio file not found" in res[4]["error"]
    assert probe(out / "a.mp4").frames == _frames(0.6) and probe(out / "b.mp4").frames == _frames(1.0)
    # same seed and inputs, whichever worker ran them: the same video
    a, d = read_frames(out / "a.mp4"), read_frames(out / "d.mp4")
    assert a.shape == d.shape and np.abs(a.astype(int) - d.astype(int)).mean() < 1.0
    assert _partials(out) == []


def test_overlap_on_and_off_give_the_same_videos(tmp_path):
    img, wav = make_inputs(tmp_path, seconds=0.6)
    videos = {}
    for overlap in (True, False):
        folder = tmp_path / str(overlap)
        folder.mkdir()
        jobs = parse_manifest(f"{img},{wav},a.mp4,,1\n{img},{wav},b.mp4,,2\n", Defaults(preset=TINY, out_dir=folder))
        outcome = run_batch(jobs, BatchOptions(), overlap=overlap)
        assert [r.status for r in outcome.results] == ["ok", "ok"] and outcome.exit_code == 0
        videos[overlap] = [read_frames(folder / n) for n in ("a.mp4", "b.mp4")]
    assert all(np.array_equal(x, y) for x, y in zip(videos[True], videos[False]))


def test_a_stop_after_a_jobs_last_chunk_keeps_that_job(tmp_path):
    """Ctrl-C while job 1 only encodes its tail (job 2 already started, overlapped) keeps job 1:
    its model work is done, so its video is whole; only chunks not yet made are given up."""
    img, wav = make_inputs(tmp_path, seconds=0.6)
    jobs = parse_manifest(f"{img},{wav},a.mp4\n{img},{wav},b.mp4\n", Defaults(preset=TINY, out_dir=tmp_path))
    stop = threading.Event()

    def on_chunk(line, done, total):
        if line == 1 and done == total:
            stop.set()  # job 1's last chunk is made: the signal arrives during its encode tail

    outcome = run_batch(jobs, BatchOptions(), stop=stop, on_chunk=on_chunk)
    assert outcome.interrupted and outcome.exit_code == 130
    assert [(r.line, r.status) for r in outcome.results] == [(1, "ok")]  # job 2 never started
    assert probe(tmp_path / "a.mp4").frames == _frames(0.6)
    assert not (tmp_path / "b.mp4").exists() and _partials(tmp_path) == []


def _wait_for(cond, proc, seconds=60.0):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if cond():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    return False


def test_interrupted_and_killed_batch_restarts_only_missing_jobs(tmp_path):
    img, _ = make_inputs(tmp_path)
    # b and d are long enough (tens of chunks) that no machine finishes them before the signal
    lengths = {"a": 0.6, "b": 30.0, "c": 0.6, "d": 30.0, "e": 0.6}
    for name, s in lengths.items():
        _wav(tmp_path / f"{name}.wav", s)
    manifest = tmp_path / "jobs.csv"
    manifest.write_text("".join(f"{img},{tmp_path / n}.wav,{n}.mp4\n" for n in lengths))
    out = tmp_path / "out"
    args = PY + ["render", "--manifest", str(manifest), "--preset", TINY, "--out-dir", str(out), "--json"]

    def complete(name):
        return (out / f"{name}.mp4").exists() and probe(out / f"{name}.mp4").frames == _frames(lengths[name])

    def final_names():
        return sorted(p.stem for p in out.glob("[a-e].mp4"))

    # 1. Ctrl-C while "b" renders: exit 130, b's partial file removed, "a" kept
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    b_partial = partial_path(out / "b.mp4")
    assert _wait_for(lambda: b_partial.exists() and b_partial.stat().st_size > 0, proc), "b never started"
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr.decode()
    assert "Traceback" not in stderr.decode() and "interrupted" in stderr.decode()
    assert final_names() == ["a"] and complete("a") and _partials(out) == []
    assert _lines(stdout.decode())[2]["status"] == "failed"

    # 2. SIGKILL (no clean-up at all) once b and c are reported done and d renders:
    #    only complete files under final names
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reported: list[str] = []  # the JSON result lines, as they arrive

    def read_results():
        for line in proc.stdout:
            reported.append(line)

    reader = threading.Thread(target=read_results, daemon=True)
    reader.start()
    d_partial = partial_path(out / "d.mp4")
    assert _wait_for(lambda: len(reported) >= 3 and d_partial.exists() and d_partial.stat().st_size > 0, proc), (
        "d never started after b and c"
    )
    proc.kill()
    proc.wait(timeout=60)
    reader.join(timeout=60)
    proc.stderr.close()
    assert final_names() == ["a", "b", "c"] and all(complete(n) for n in "abc")
    assert d_partial.exists()  # left behind, but never under the final name
    assert {n: r["status"] for n, r in _lines("".join(reported)).items()} == {1: "skipped", 2: "ok", 3: "ok"}

    # 3. restart: finishes only d and e
    code, stdout, stderr = run_cli(args[3:])
    assert code == 0, stderr
    assert {n: r["status"] for n, r in _lines(stdout).items()} == {
        1: "skipped",
        2: "skipped",
        3: "skipped",
        4: "ok",
        5: "ok",
    }
    assert final_names() == list("abcde") and all(complete(n) for n in lengths) and _partials(out) == []


def test_whole_manifest_errors_are_one_line(tmp_path):
    code, _, stderr = run_cli(["render", "--manifest", str(tmp_path / "none.csv"), "--preset", TINY])
    assert code == 2 and stderr.strip() == f"flowact: error: {tmp_path / 'none.csv'}: manifest file not found"
    bad = tmp_path / "bad.csv"
    bad.write_text("image,audio,colour\nx.png,y.wav,red\n")
    code, _, stderr = run_cli(["render", "--manifest", str(bad), "--preset", TINY])
    assert code == 2 and "unknown column 'colour'" in stderr and len(stderr.strip().splitlines()) == 1
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n# nothing\n")
    code, stdout, stderr = run_cli(["render", "--manifest", str(empty), "--preset", TINY, "--json"])
    assert code == 0 and stdout == "" and "no jobs" in stderr
