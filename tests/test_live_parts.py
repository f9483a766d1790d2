"""The live loop shows a chunk's first frame while the rest are drawn: its margin ahead of the clock
covers the chunk's first part, not the whole chunk; a frame drawn late is held mid-chunk (a `late`
event, the schedule slips), and no frame or speech sample is dropped."""

import threading
import time
from pathlib import Path

import numpy as np

from flowact.config import load_preset
from flowact.live import EventLog, LiveOptions, LiveSession
from flowact.routes import load_route, route_of
from helpers import TINY, make_inputs

F = 8  # the presets' frames a chunk
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


class Recorder:
    """A live session's output: each written frame's first pixel (the fake stream's frame number) and
    its sound's loudness."""

    def __init__(self):
        self.ids, self.loud = [], []

    @property
    def frames(self):
        return len(self.ids)

    def write(self, frame, pcm):
        self.ids.append(int(frame[0, 0, 0]))
        self.loud.append(float(np.abs(pcm).max()))
        return time.perf_counter()

    def close(self):
        return self.frames


def _photo_session(tmp_path, duration: float, seconds: float):
    """A live session on the photo route (the portrait at 320x256, the shipped motion engine) writing to
    a Recorder, its events, and `speak()`: a speak of `seconds` of the human recording, as `submit`
    gives it once it has read the file."""
    from PIL import Image

    from flowact.live.protocol import command_from_dict
    from flowact.media.audio import load_audio

    photo = tmp_path / "face.jpg"
    Image.open(EXAMPLES / "astronaut.jpg").crop((40, 0, 480, 352)).resize((320, 256)).save(photo, quality=90)
    p = load_preset("photo-512")
    reference, face = route_of(p).load_picture(p, photo)
    voice = load_audio(EXAMPLES / "human_speech.wav").samples[int(0.4 * 16000) : int((0.4 + seconds) * 16000)]
    out, events = Recorder(), []
    opts = LiveOptions(duration=duration, planner="none")
    session = LiveSession(load_route(p, threads=1), reference, opts, EventLog(on_event=events.append), face=face,
                          output=out)  # fmt: skip

    def speak():
        cmd = command_from_dict({"cmd": "speak", "audio": "voice.wav", "interrupt": True}, time.perf_counter())
        cmd.samples = voice
        session.enqueue(cmd)

    return session, out, events, speak


def _session(tmp_path, first_s: float, each_s: float, slow: dict, duration: float):
    """A live session on the tiny preset whose chunks come in parts: frame 0 after `first_s`, each
    later one `each_s` after the one before (plus slow[(chunk, frame)] seconds). Each frame's pixels
    are its number in the stream (mod 251)."""
    p = load_preset(TINY)
    img, _ = make_inputs(tmp_path)
    reference, face = route_of(p).load_picture(p, img)
    route = load_route(p, random_weights=True, threads=1)
    real_stream = route.stream
    warm = {"done": False}

    def stream(picture, seed, *args, **kwargs):
        s = real_stream(picture, seed, *args, **kwargs)

        def live_parts(index, prompt, state, pcm, lookahead):
            for i in range(F):
                if warm["done"]:  # the warm-up's chunks come at once
                    time.sleep((first_s if i == 0 else each_s) + slow.get((index, i), 0.0))
                yield np.full((1, p.video.height, p.video.width, 3), (index * F + i) % 251, np.uint8)

        s.live_parts = live_parts
        return s

    route.stream = stream
    out, events = Recorder(), []
    session = LiveSession(
        route, reference, LiveOptions(duration=duration, planner="none"), EventLog(on_event=events.append), output=out
    )
    original = session._warm_up

    def warm_up():
        try:
            return original()
        finally:
            warm["done"] = True

    session._warm_up = warm_up
    return session, out, events


def test_the_margin_covers_the_first_frame_not_the_whole_chunk(tmp_path):
    # a chunk: 20 ms to its first frame, then 30 ms a frame (230 ms in all, 320 ms of video)
    session, out, events = _session(tmp_path, 0.02, 0.03, {}, duration=4.0)
    report = session.run()
    chunks = [e for e in events if e["event"] == "chunk"]
    assert report.frames == out.frames == 100
    assert min(e["gen_ms"] for e in chunks[2:]) >= 200  # each chunk took its whole drawing time
    # waiting for a whole chunk would need ahead >= 1.25 x 230 + 40 ms; its first frame needs ~20 ms
    assert report.ahead_ms <= 150, report.ahead_ms
    # every frame shown, in order; holds (if a busy machine made any) repeat the frame before
    shown = [i for k, i in enumerate(out.ids) if k == 0 or i != out.ids[k - 1]]
    assert shown == [i % 251 for i in range(len(shown))]


def test_a_frame_drawn_late_is_held_mid_chunk_and_nothing_is_dropped(tmp_path):
    # chunk 4's sixth frame comes 0.5 s late (~0.24 s after its slot): the frames before it show, then
    # the fifth is held
    session, out, events = _session(tmp_path, 0.01, 0.005, {(4, 5): 0.5}, duration=4.0)
    stop = threading.Timer(30.0, session.stop)  # a hang fails the asserts below instead of the run
    stop.start()
    report = session.run()
    stop.cancel()
    late = [e for e in events if e["event"] == "late"]
    assert report.held_frames >= 3 and any(e["index"] == 4 for e in late), late
    first = out.ids.index(4 * F + 4)  # chunk 4's fifth frame ...
    assert out.ids[first + 1] == 4 * F + 4  # ... is held (written again) while its sixth is drawn
    shown = [i for k, i in enumerate(out.ids) if k == 0 or i != out.ids[k - 1]]
    assert shown == [i % 251 for i in range(len(shown))]  # nothing dropped, in order
    assert report.frames == out.frames == 100  # the stream lasts as long as the wall clock


def test_speech_arriving_while_a_chunk_shows_starts_within_it(tmp_path):
    """The photo route: a speak that arrives in the middle of a chunk is spliced into that chunk a few
    frames ahead of the one showing (the chunk made again from its state before), not held back to the
    next chunk; its sound starts on the frame that first shows it."""
    session, out, events, speak = _photo_session(tmp_path, duration=4.0, seconds=1.0)

    def speaker():  # 1.13 s and 2.57 s into the stream: the middle of chunks 3 and 8 (0.32 s each)
        while session.t0 is None:
            time.sleep(0.005)
        for at in (1.13, 2.57):
            while time.perf_counter() < session.t0 + at:
                time.sleep(0.002)
            speak()

    threading.Thread(target=speaker, daemon=True).start()
    report = session.run()
    assert report.frames == out.frames == 100
    splices = [e for e in events if e["event"] == "splice"]
    spoken = [e for e in events if e["event"] == "command" and e["cmd"] == "speak" and e.get("latency_ms") is not None]
    assert report.splices == len(splices) >= 1 and len(spoken) == 2, (splices, spoken)
    for e in splices:
        assert 0 < e["at"] < F  # inside the chunk, not at its start
    for e in spoken:
        # shown within the chunk it arrived in (the next chunk's start would be 0.05-0.3 s + ahead later)
        assert e["latency_ms"] < 300, e
        assert out.loud[e["frame"]] > 0.0  # its sound starts on that frame


def test_speech_arriving_while_a_chunk_is_drawn_cuts_the_drawing_and_nothing_is_lost(tmp_path, monkeypatch):
    """A speak that comes while a chunk's frames are being drawn: its drawing stops after that part, and
    the splice makes the rest with the speech in it. Every chunk still shows all its frames (consecutive
    chunk events are F frames apart, plus any held ones), and every speak is shown."""
    from flowact.photo.rig import PhotoRig

    session, out, events, speak = _photo_session(tmp_path, duration=6.0, seconds=0.6)
    render = PhotoRig.render
    calls = {"n": 0, "spoken": 0}

    def reported():
        return sum(e["event"] == "command" and e["cmd"] == "speak" for e in events)

    def part_with_speech(self, motion, *args, **kwargs):  # every third chunk: speech arrives while its
        if len(motion) == 3:  # frames 1-3 are drawn (the live loop's second part) ...
            calls["n"] += 1
            # ... once the speak before has been shown (a speak that interrupts one not yet shown drops
            # it, by design) and not in the stream's last second (it would end before showing it)
            early = session.t0 is not None and time.perf_counter() < session.t0 + 5.0
            if calls["n"] > 2 and calls["n"] % 3 == 0 and early and reported() == calls["spoken"]:
                calls["spoken"] += 1
                speak()
        return render(self, motion, *args, **kwargs)

    monkeypatch.setattr(PhotoRig, "render", part_with_speech)
    report = session.run()
    assert report.frames == 150
    splices = [e for e in events if e["event"] == "splice"]
    assert any(e["cut"] for e in splices), splices  # some came while a rest was being drawn
    chunks = [e for e in events if e["event"] == "chunk"]
    late = [e for e in events if e["event"] == "late"]
    for a, b in zip(chunks, chunks[1:]):
        held = sum(e["held_frames"] for e in late if a["frame"] < e["frame"] <= b["frame"] + F)
        assert b["frame"] - a["frame"] - F in range(0, held + 1), (a, b, held)  # no chunk cut short
    spoken = [e for e in events if e["event"] == "command" and e["cmd"] == "speak"]
    assert len(spoken) == calls["spoken"] >= 4, spoken
    assert all(e.get("latency_ms") is not None for e in spoken), spoken  # each shown


def test_a_spliced_chunk_eases_head_and_gaze_and_moves_the_mouth_at_once():
    """The remade chunk's head, gaze, brows and body differ from the shown one's everywhere (same noise,
    other speech): they are eased to it by the chunk's last frame; its mouth is taken at once."""
    from flowact.routes.photo import _eased

    rng = np.random.default_rng(0)
    shown, remade = rng.random((F, 16), dtype=np.float32), rng.random((F, 16), dtype=np.float32)
    out = _eased(shown, remade, 5)
    assert np.array_equal(out[5:, :5], remade[5:, :5])  # the mouth: the new speech's, from the splice on
    np.testing.assert_allclose(out[5, 5:], shown[5, 5:] + (remade[5, 5:] - shown[5, 5:]) / 3, rtol=1e-6)
    np.testing.assert_allclose(out[-1], remade[-1], rtol=1e-6)  # the chunk ends where the stream now is
