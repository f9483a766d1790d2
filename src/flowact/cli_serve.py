"""`flowact serve` (live sessions in a browser over WebRTC). Registered by cli.py."""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from .cli_common import RoutePresetOpt
from .errors import FlowactError


def register(app: typer.Typer) -> None:
    """Add the serve command to the main app."""
    app.command(name="serve")(serve)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (not loopback: --token is required)."),
    port: int = typer.Option(8000, "--port", help="TCP port (0: any free port; the ready line says which)."),
    media: Optional[Path] = typer.Option(
        None,
        "--media",
        help="Folder of pictures and audio the page and the API may use by name (besides the examples).",
    ),
    max_sessions: int = typer.Option(3, "--max-sessions", help="Sessions at once; more are answered 503."),
    token: Optional[str] = typer.Option(
        None,
        "--token",
        envvar="FLOWACT_TOKEN",
        help="Require this token on every /api call (Authorization: Bearer TOKEN, or ?token= in the page's URL).",
    ),
    preset: RoutePresetOpt = "auto",
    workers: Optional[int] = typer.Option(
        None, "--workers", help="Threads that run the model work of all sessions (default: one per CPU core)."
    ),
):
    """Serve live characters to web browsers: pick a picture, talk through the microphone, make it speak.

    Each session is a `flowact live` stream (the same engine and command protocol: speak, speak_pcm,
    state, prompt, listen, listen_pcm, interrupt, stop) whose video and speech go to the browser over
    WebRTC, paced at the preset's frame rate. The server is ready when it prints its URL on stderr.

    Open the URL for the page. An assistant drives a session through its WebSocket or
    POST /api/sessions/ID/commands (docs/serve.md, examples/serve_client.py). A page opened as
    /?image=NAME&say=NAME&autoplay=1 starts by itself and keeps window.flowact = {state, frames,
    width, height, audio} current.

    Safe by default: it listens on 127.0.0.1; it reads only files inside --media and the bundled
    examples; uploads are capped and checked; a session whose browser leaves ends. Ctrl-C or SIGTERM
    ends every session and stops the server (exit 0).

    Examples:

        flowact serve

        flowact serve --media ./my_pictures --max-sessions 4 --port 8080

        flowact serve --host 0.0.0.0 --token "$(openssl rand -hex 16)"
    """
    try:
        import aiohttp  # noqa: F401
        import aiortc  # noqa: F401
    except ImportError as exc:
        raise FlowactError(
            f"flowact serve needs aiohttp and aiortc ({exc.name} is missing): pip install 'flowact[serve]'"
        )
    from .config import load_preset
    from .routes.choose import PHOTO_PRESET
    from .serve.app import run_server

    if not _loopback(host) and not token:
        raise FlowactError(f"--host {host} lets other machines in: give a --token (or FLOWACT_TOKEN) as well")
    if token is not None and len(token) < 8:
        raise FlowactError("--token must be at least 8 characters")
    if not 0 <= port <= 65535:
        raise FlowactError("--port must be in 0..65535")
    if max_sessions < 1:
        raise FlowactError("--max-sessions must be at least 1")
    if workers is not None and workers < 1:
        raise FlowactError("--workers must be at least 1")
    if media is not None and not media.is_dir():
        raise FlowactError("--media must be an existing folder", path=media)
    # the preset sessions start with ("auto": each picture's route); its weights load before "ready"
    first = PHOTO_PRESET if preset == "auto" else preset
    load_preset(first)  # a bad --preset is refused here
    options = {"workers": workers or os.cpu_count() or 1, "preset": preset, "preload": [first]}

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        code = run_server(host, port, media, max_sessions, token, options, log)
    except OSError as exc:
        raise FlowactError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from exc
    if code:
        raise typer.Exit(code)
