"""`flowact serve`: live sessions in a web browser. Each session is a `flowact live` stream (the same
LiveSession and command protocol) whose frames and speech go to the page over WebRTC.

app.py       the HTTP server (aiohttp): the page, the JSON API, the per-session WebSocket, start and stop
sessions.py  a served session (LiveSession + its viewer's WebRTC connection + commands and events) and
             the set of them (--max-sessions, ending and forgetting them)
workers.py   how sessions share the CPU: one pool of worker threads runs every session's model work
tracks.py    the WebRTC media: paced frames (VP8) and speech out, the browser's microphone in
media.py     what may be read: names in --media and the bundled examples, checked uploads
static/      the page (index.html, flowact.js, style.css)
examples/    the bundled examples: a photograph, a drawn character, a human voice (CMU ARCTIC)

Nothing else in flowact imports this package but cli_serve.py.
"""
