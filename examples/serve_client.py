"""An assistant drives a character that a person watches in a browser (`flowact serve` must be running).

    python examples/serve_client.py                                  # the bundled portrait says the bundled clip
    python examples/serve_client.py --server http://127.0.0.1:8000 --image astronaut.jpg --speech my_tts.wav

It starts a session, prints the page to open, waits until someone watches, then streams the
speech as a text-to-speech engine would: 16 kHz PCM in 0.2 s pieces (`speak_pcm`, `final` on the
last). Only the standard library is used; the protocol is docs/serve.md's.
"""

import argparse
import base64
import json
import time
import urllib.request
import wave


def call(server: str, method: str, path: str, body=None, token=None) -> dict:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    with urllib.request.urlopen(urllib.request.Request(server + path, data, headers, method=method)) as r:
        return json.loads(r.read())


def pcm16k(path: str) -> bytes:
    """A 16 kHz mono 16-bit WAV's samples (what a TTS engine would hand over)."""
    with wave.open(path) as w:
        if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (16000, 1, 2):
            raise SystemExit(f"{path}: need 16 kHz mono 16-bit PCM")
        return w.readframes(w.getnframes())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", default="http://127.0.0.1:8000")
    ap.add_argument("--image", default="astronaut.jpg", help="a picture name the server knows (GET /api/media)")
    ap.add_argument("--speech", default="examples/human_speech.wav", help="a local 16 kHz mono WAV to stream")
    ap.add_argument("--token", default=None)
    ap.add_argument("--wait", type=float, default=60.0, help="seconds to wait for a viewer")
    a = ap.parse_args()
    server = a.server.rstrip("/")
    pcm = pcm16k(a.speech)

    session = call(server, "POST", "/api/sessions", {"image": a.image}, a.token)
    sid = session["id"]
    print(f"watch: {server}{session['watch']}", flush=True)
    deadline = time.time() + a.wait
    while not call(server, "GET", f"/api/sessions/{sid}", token=a.token)["viewer"]:
        if time.time() > deadline:
            raise SystemExit("nobody opened the page")
        time.sleep(0.2)

    piece = 2 * 3200  # 0.2 s of 16-bit samples
    for i in range(0, len(pcm), piece):
        command = {"cmd": "speak_pcm", "data": base64.b64encode(pcm[i : i + piece]).decode()}
        command["final"] = i + piece >= len(pcm)
        call(server, "POST", f"/api/sessions/{sid}/commands", command, a.token)
        time.sleep(0.15)  # a little faster than real time, as a TTS engine streams
    time.sleep(len(pcm) / 32000 + 1.0)  # let it finish speaking
    print(json.dumps(call(server, "GET", f"/api/sessions/{sid}", token=a.token)), flush=True)


if __name__ == "__main__":
    main()
