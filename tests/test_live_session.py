"""`flowact live` end to end: paced sessions into real ffmpeg files, from a script and from stdin."""

import base64
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from flowact.media.audio import load_audio, write_wav
from flowact.media.ffmpeg import find_ffmpeg
from flowact.media.probe import probe
from helpers import TINY, make_inputs, run_cli

PY = [sys.executable, "-c", "from flowact.cli import main; main()"]
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SPF = 640  # samples per frame at 16 kHz / 25 fps


def speech_clip(folder: Path, seconds: float = 1.2) -> tuple[Path, np.ndarray]:
    """A real (espeak) speech excerpt, voiced from its start."""
    x = load_audio(EXAMPLES / "speech_en.wav").samples[int(0.3 * 16000) : int((0.3 + seconds) * 16000)]
    path = folder / "clip.wav"
    write_wav(path, x, 16000)
    return path, load_audio(path).samples


def decoded_audio(path: Path) -> np.ndarray:
    raw = subprocess.run(
        [
            find_ffmpeg(),
            "-hide_banner",
            "-loglevel",
            "error",
            "-i",
            str(path),
            "-map",
            "0:a:0",
            "-ac",
            "1",
            "-ar",
            "16000",
            "-f",
            "f32le",
            "pipe:1",
        ],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, np.float32)


def frame_rms(x: np.ndarray) -> np.ndarray:
    n = len(x) // SPF
    return np.sqrt(np.mean(x[: n * SPF].reshape(n, SPF) ** 2, axis=1))


def read_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_scripted_session_idle_speak_listen_wave_stop(tmp_path):
    img, _ = make_inputs(tmp_path)
    clip, clip_samples = speech_clip(tmp_path)
    script = tmp_path / "session.jsonl"
    script.write_text(
        "\n".join(
            json.dumps(x)
            for x in [
                {"at": 0.5, "cmd": "speak", "audio": "clip.wav", "id": "hello"},
                {"at": 0.8, "cmd": "dance"},  # malformed: error event, the stream goes on
                {"at": 0.9, "cmd": "speak", "audio": "missing.wav"},  # unreadable: error event
                {"at": 2.3, "cmd": "listen", "active": True},
                {"at": 3.0, "cmd": "listen", "active": False},
                {"at": 3.0, "cmd": "prompt", "text": "waving hello"},
                {"at": 3.9, "cmd": "stop"},
            ]
        )
        + "\n"
    )
    out, events_path = tmp_path / "live.mp4", tmp_path / "events.jsonl"
    code, stdout, stderr = run_cli(
        [
            "live",
            "-i",
            str(img),
            "--preset",
            TINY,
            "--script",
            str(script),
            "--out",
            str(out),
            "--events",
            str(events_path),
            "--json",
        ]
    )
    assert code == 0, stderr
    summary = json.loads(stdout)
    events = read_events(events_path)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "summary"

    # a valid file whose length is the wall-clock length of the stream (within one chunk)
    info = probe(out)
    assert (info.video_codec, info.width, info.height, info.fps, info.audio_codec) == ("h264", 64, 64, 25.0, "aac")
    assert info.frames == summary["frames"]
    assert abs(info.frames / 25 - summary["wall_seconds"]) <= 0.32
    assert 3.9 <= summary["wall_seconds"] <= 3.9 + 2.5  # stop at 3.9 s, reflected one chunk + ahead later
    assert abs(info.audio_duration - info.frames / 25) <= 0.1

    # malformed lines were reported and skipped; every accepted command has its latency
    errors = [e for e in events if e["event"] == "error"]
    assert len(errors) == 2 and summary["errors"] == 2 and "unknown cmd" in errors[0]["message"]
    assert "missing.wav" in errors[1]["message"]
    cmds = [e for e in events if e["event"] == "command"]
    assert [c["cmd"] for c in cmds] == ["speak", "listen", "listen", "prompt", "stop"]
    assert all(c["latency_ms"] is not None and 0 < c["latency_ms"] < 3000 for c in cmds), cmds
    assert summary["latency_ms"]["speak"]["n"] == 1 and summary["latency_ms"]["all"]["n"] == 5

    # the states followed the script: idle -> speaking -> listening -> waving
    states = [e["state"] for e in events if e["event"] == "state"]
    assert states[0] == "idle"
    order = [states.index(s) for s in ("speaking", "listening", "waving")]
    assert order == sorted(order), states

    # the speech is in the audio track exactly where its command was reflected, silence elsewhere
    speak_frame = next(c["frame"] for c in cmds if c["cmd"] == "speak")
    assert speak_frame * 0.04 >= 0.5  # not before the command was sent
    rms = frame_rms(decoded_audio(out))
    voiced = np.flatnonzero(rms > 0.02)
    assert abs(voiced[0] - speak_frame) <= 2, (voiced[0], speak_frame)
    held_in_speech = sum(
        e["held_frames"]
        for e in events
        if e["event"] == "late" and speak_frame < e["frame"] <= speak_frame + 30 + e["held_frames"]
    )
    clip_frames = len(clip_samples) // SPF
    assert voiced[-1] <= speak_frame + clip_frames + held_in_speech + 2
    assert rms[: max(0, speak_frame - 2)].max(initial=0) < 0.005
    energy_out, energy_clip = float(np.sum(rms**2)), float(np.sum(frame_rms(clip_samples) ** 2))
    assert abs(energy_out / energy_clip - 1) < 0.2
    if held_in_speech == 0:  # the envelope itself matches the clip's, frame for frame
        a = rms[speak_frame : speak_frame + clip_frames]
        b = frame_rms(clip_samples)[: len(a)]
        assert np.corrcoef(a, b)[0, 1] > 0.95

    # chunks were produced in order, each reported; late chunks (if any) reported too
    chunks = [e for e in events if e["event"] == "chunk"]
    assert [c["index"] for c in chunks] == list(range(len(chunks)))
    assert summary["late_chunks"] == sum(1 for e in events if e["event"] == "late")
    assert summary["held_frames"] == sum(e["held_frames"] for e in events if e["event"] == "late")


def _pcm(x: np.ndarray) -> str:
    return base64.b64encode((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()).decode()


def test_stdin_stream_survives_bad_lines_and_sigterm_finalises(tmp_path):
    img, _ = make_inputs(tmp_path)
    _, clip = speech_clip(tmp_path, 0.9)
    out = tmp_path / "live.mp4"
    proc = subprocess.Popen(
        PY + ["live", "-i", str(img), "--preset", TINY, "--out", str(out), "--json-events"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    started = threading.Event()

    def collect():
        for line in proc.stderr:
            lines.append(line)
            if '"event": "start"' in line:
                started.set()

    reader = threading.Thread(target=collect, daemon=True)
    reader.start()
    try:
        assert started.wait(60), "".join(lines)
        send = [
            "this is not json",
            '{"cmd": "state", "state": "flying"}',
            '{"cmd": "speak_pcm", "data": "%s", "final": false}' % _pcm(clip[:4800]),
            "",
            '{"cmd": "speak_pcm", "data": "%s", "final": false}' % _pcm(clip[4800:9600]),
            '{"cmd": "speak_pcm", "data": "%s", "final": true}' % _pcm(clip[9600:]),
            '{"cmd": "state", "state": "thinking", "id": 3}',
        ]
        for s in send:
            proc.stdin.write(s + "\n")
            proc.stdin.flush()
            time.sleep(0.1)
        deadline = time.time() + 30  # until every command has been reflected, then a little more
        while time.time() < deadline and sum('"event": "command"' in line for line in lines) < 4:
            time.sleep(0.1)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(10)
    assert proc.returncode == 130, "".join(lines)
    events = [json.loads(line) for line in lines if line.startswith("{")]
    assert sum(e["event"] == "error" for e in events) == 2
    cmds = [e for e in events if e["event"] == "command"]
    assert sorted(c["cmd"] for c in cmds) == ["speak_pcm", "speak_pcm", "speak_pcm", "state"]
    assert all(c["latency_ms"] is not None for c in cmds), [e for e in events if e["event"] not in ("chunk", "memory")]
    # streamed pieces play back to back, in order: each is reflected when its first sample plays
    f = [c["frame"] for c in cmds if c["cmd"] == "speak_pcm"]
    assert f[0] < f[1] < f[2] and f[2] - f[0] <= 9600 // SPF + 8  # 0.6 s of speech apart (+ held frames)
    assert abs((f[1] - f[0]) - 4800 / SPF) <= 1 + sum(e["held_frames"] for e in events if e["event"] == "late")
    summary = next(e for e in events if e["event"] == "summary")
    assert summary["interrupted"] is True
    info = probe(out)  # finalised: playable, with audio
    assert info.frames == summary["frames"] > 25 and info.audio_codec == "aac"
    assert abs(info.frames / 25 - summary["wall_seconds"]) <= 0.32


def test_live_bad_input_is_one_line_before_loading(tmp_path):
    img, _ = make_inputs(tmp_path)
    code, _, err = run_cli(["live", "-i", str(tmp_path / "nope.png"), "--preset", TINY])
    assert code == 2 and err.strip().startswith("flowact: error:") and "nope.png" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"cmd": "stop"}\n')
    code, _, err = run_cli(["live", "-i", str(img), "--preset", TINY, "--script", str(bad)])
    assert code == 2 and "line 1" in err and "Traceback" not in err
    code, _, err = run_cli(["live", "-i", str(img), "--preset", TINY, "--planner", "gpt"])
    assert code == 2 and "planner" in err
    code, out, _ = run_cli(["live", "--help"])
    assert code == 0 and "speak_pcm" in out and "--script" in out
