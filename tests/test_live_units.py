"""`flowact live` pieces without a stream: protocol, script files, speech queue, planner, incremental audio."""

import base64
import json

import numpy as np
import pytest
import torch

from flowact.errors import FlowactError
from flowact.live.planner import Observation, RulePlanner
from flowact.live.protocol import ProtocolError, load_script, parse_command
from flowact.live.speech import IncrementalAudio, ListenChannel, SpeechQueue
from helpers import TINY


def pcm_b64(samples):
    return base64.b64encode((np.asarray(samples) * 32767).astype("<i2").tobytes()).decode()


def test_commands_parse():
    c = parse_command('{"cmd": "speak", "audio": "a.wav", "id": 7}')
    assert (c.kind, c.audio, c.id, c.interrupt) == ("speak", "a.wav", "7", False)
    c = parse_command(json.dumps({"cmd": "speak_pcm", "data": pcm_b64([0.5, -0.5]), "final": False}))
    assert c.final is False and np.allclose(c.samples, [0.5, -0.5], atol=1e-4)
    c = parse_command('{"cmd": "state", "state": "waving"}')
    assert c.state == "waving" and c.seconds == 2.0  # gestures are transient by default
    assert parse_command('{"cmd": "state", "state": "thinking"}').seconds is None  # states hold
    c = parse_command('{"cmd": "prompt", "text": "wave hello"}')
    assert (c.state, c.prompt) == ("waving", "wave hello")
    assert parse_command('{"cmd": "listen", "active": true}').active is True
    assert parse_command('{"cmd": "stop"}').kind == "stop"


@pytest.mark.parametrize(
    "line, needle",
    [
        ("not json", "not JSON"),
        ("[1, 2]", "JSON object"),
        ('{"cmd": "dance"}', "unknown cmd"),
        ('{"cmd": "state", "state": "flying"}', "unknown state"),
        ('{"cmd": "speak"}', "needs 'audio'"),
        ('{"cmd": "speak_pcm", "data": "!!"}', "base64"),
        ('{"cmd": "speak_pcm", "data": "AAAA"}', "odd number"),
        ('{"cmd": "listen"}', "active"),
        ('{"cmd": "state", "state": "idle", "seconds": -1}', "seconds"),
    ],
)
def test_bad_commands_are_protocol_errors(line, needle):
    with pytest.raises(ProtocolError, match=needle):
        parse_command(line)


def test_script_files(tmp_path):
    f = tmp_path / "s.jsonl"
    f.write_text('# demo\n{"at": 2, "cmd": "stop"}\n\n{"at": 0.5, "cmd": "dance"}\n')
    lines = load_script(f)
    assert [s.at for s in lines] == [0.5, 2.0]  # sorted; bad commands are kept (error event on replay)
    assert json.loads(lines[1].text) == {"cmd": "stop"}
    f.write_text('{"cmd": "stop"}\n')
    with pytest.raises(FlowactError, match="line 1.*at"):
        load_script(f)
    f.write_text('{"at": 1, "cmd": "stop"\n')
    with pytest.raises(FlowactError, match="not JSON"):
        load_script(f)


def test_speech_queue_takes_exact_samples_and_reports_starts():
    q = SpeechQueue()
    q.push(np.ones(300, np.float32), key=1)
    q.push(np.full(200, 2, np.float32), key=2, final=False)
    assert q.utterance_open and q.pending == 500
    a, started = q.take(256)
    assert started == [(1, 0)] and (a == 1).all()
    assert np.array_equal(q.peek(100), np.r_[np.ones(44), np.full(56, 2)])
    b, started = q.take(256)
    assert started == [(2, 44)] and (b[:44] == 1).all() and (b[44:244] == 2).all()
    assert (b[244:] == 0).all() and q.pending == 0  # silence after the speech
    assert q.take(8)[1] == []
    q.push(np.ones(10, np.float32), key=3)
    q.clear()
    assert q.pending == 0 and q.take(4)[1] == []


def test_listen_channel_is_heard_at_wall_clock_rate():
    ch = ListenChannel()
    ch.add(np.arange(32000, dtype=np.float32), start=10.0)
    assert len(ch.poll(9.0)) == 0
    assert len(ch.poll(10.5)) == 8000
    got = ch.poll(20.0)
    assert len(got) == 24000 and got[0] == 8000


def obs(t, speech=0.0, user=0.0, pending=0.0, active=None, state=None, prompt=None, rms=0.1):
    return Observation(
        index=int(t / 0.32),
        t=t,
        chunk_seconds=0.32,
        speech_voiced=speech,
        speech_rms=rms if speech else 0.0,
        speech_pending=pending,
        utterance_open=False,
        user_voiced=user,
        user_rms=rms if user else 0.0,
        user_active=active,
        commanded_state=state,
        commanded_prompt=prompt,
    )


def test_rule_planner_follows_the_situation():
    p = RulePlanner()
    seq = [
        (obs(0.0), "idle"),
        (obs(0.32, user=1.0), "listening"),
        (obs(0.64, user=1.0), "listening"),
        (obs(0.96), "listening"),  # hangover: a breath is not the end of the user's turn
        (obs(1.92), "thinking"),  # the user just stopped: think before answering
        (obs(2.24, pending=1.0), "thinking"),
        (obs(2.56, speech=1.0, pending=0.5), "speaking"),
        (obs(2.88, speech=0.0, pending=0.5), "speaking"),  # a short pause inside speech
        (obs(4.0, speech=0.0, pending=0.5), "thinking"),  # a longer pause before more speech
        (obs(9.0), "idle"),
    ]
    for o, want in seq:
        assert p.update(o).state == want, (o.t, want)
    plan = p.update(obs(9.32, state="waving", prompt="waving hello"))
    assert (plan.state, plan.prompt, plan.by) == ("waving", "waving hello", "command")
    assert p.update(obs(9.64, active=True)).state == "listening"  # explicit flag, reacts at once


def test_rule_planner_nods_on_emphasis_and_varies_speaking_prompt():
    p = RulePlanner()
    for i in range(5):
        p.update(obs(i * 0.32, user=1.0, rms=0.05))
    assert p.update(obs(1.6, user=1.0, rms=0.2)).state == "nodding"
    q = RulePlanner()
    for i in range(5):
        q.update(obs(i * 0.32, speech=1.0, rms=0.05, pending=1))
    assert q.update(obs(1.6, speech=1.0, rms=0.2, pending=1)).prompt == "explaining something"


def test_incremental_audio_tokens_match_the_whole_file():
    from flowact.config import load_preset
    from flowact.model import FlowActModel
    from flowact.stream.generator import AudioTrack

    torch.manual_seed(0)
    model = FlowActModel(load_preset(TINY)).eval()
    rng = np.random.default_rng(1)
    chunk = 5120
    x = (rng.standard_normal(chunk * 6) * 0.1).astype(np.float32)
    whole = AudioTrack(model, x, "cpu")
    inc = IncrementalAudio(model.audio, 2, "cpu")
    assert inc.chunk_samples == chunk
    for k in range(5):
        tok = inc.tokens(x[k * chunk : (k + 1) * chunk], x[(k + 1) * chunk : (k + 2) * chunk])
        ref = whole.tokens(2 * k, 2)
        if k >= 1:  # chunk 0 differs only by the file-start padding (zeros here, reflection there)
            torch.testing.assert_close(tok, ref, atol=1e-4, rtol=1e-4)
    # causal: the tokens of a chunk do not depend on audio past its look-ahead
    inc2 = IncrementalAudio(model.audio, 2, "cpu")
    a = inc2.tokens(x[:chunk], np.zeros(chunk, np.float32))
    inc3 = IncrementalAudio(model.audio, 2, "cpu")
    la = np.zeros(chunk, np.float32)
    la[inc3.lookahead_samples :] = 1.0
    torch.testing.assert_close(a, inc3.tokens(x[:chunk], la))
