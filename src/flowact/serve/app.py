"""The HTTP server (aiohttp): the page, the JSON API, the per-session WebSocket, and its start and stop.

    GET  /                              the page (static/index.html; ?image=&say=&autoplay=1 starts by itself)
    GET  /health                        {"ok": true, "sessions": n, ...}
    GET  /api/media                     {"pictures": [...], "audio": [...]}: names in --media and the examples
    POST /api/uploads?kind=picture|audio   a file (multipart field "file", or the raw body with ?name=)
    POST /api/sessions                  {"image": NAME, "planner": "rules" | "none"} -> 201 {"id", ...}
    GET  /api/sessions[/ID]             what runs
    DELETE /api/sessions/ID             end it
    POST /api/sessions/ID/offer         WebRTC offer -> answer (the page's viewer)
    POST /api/sessions/ID/commands      one command of the live protocol, or a list -> 202
    GET  /api/sessions/ID/ws            WebSocket: commands in, the session's events out (?role=viewer: the
                                        page; the session ends when its viewer's socket closes)

Refusals are JSON {"error": "..."} with a 4xx status (503 when --max-sessions are running); with
--token every /api call needs `Authorization: Bearer TOKEN` (or ?token= for the page's socket).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web

from ..errors import FlowactError
from .media import KINDS, MAX_BYTES, MediaLibrary, Refused
from .sessions import SessionManager

STATIC = Path(__file__).resolve().parent / "static"
MAX_JSON_BYTES = 8 * 2**20  # a command with 60 s of base64 PCM is ~2.6 MB


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("flowact")
    except PackageNotFoundError:
        return "unknown"


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def _errors(request: web.Request, handler):
    """Refusals and user errors become JSON with their status; a bug becomes a 500 and the server goes on."""
    try:
        return await handler(request)
    except Refused as exc:
        return _error(exc.status, str(exc))
    except FlowactError as exc:
        return _error(400, str(exc))
    except web.HTTPException:
        raise
    except Exception as exc:  # noqa: BLE001 - one request's failure never stops the server
        request.app["log"](f"error: {request.method} {request.path}: {type(exc).__name__}: {exc}")
        return _error(500, f"internal error ({type(exc).__name__}); the server goes on")


def _auth(token: str | None):
    """The token (when set) on /api, and browsers only from this server's own pages: another site's
    page (its Origin differs) may not start sessions, upload or open a session's socket here."""

    @web.middleware
    async def check(request: web.Request, handler):
        origin = request.headers.get("Origin")
        if origin and request.path.startswith("/api/") and urlsplit(origin).netloc != request.host:
            return _error(403, f"requests from {origin} are not allowed: open the page this server serves")
        if token and request.path.startswith("/api/"):
            given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            given = given or request.query.get("token", "")
            if not secrets.compare_digest(given.encode(), token.encode()):
                return _error(401, "this server needs its token: Authorization: Bearer TOKEN (or ?token=TOKEN)")
        return await handler(request)

    return check


async def _json(request: web.Request):
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise Refused(f"the request body is not JSON ({exc})") from exc


# ---- handlers ---------------------------------------------------------------------------------------


async def page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


async def health(request: web.Request) -> web.Response:
    m: SessionManager = request.app["sessions"]
    f = m.facts  # the stream process's, at most half a second old
    return web.json_response(
        {
            "ok": not m.dead.done(),
            "version": _version(),
            "sessions": len(m.sessions),
            "max_sessions": m.max_sessions,
            "started_total": m.started_total,
            # ended sessions still in the stream process's memory (or still running there)
            "unreleased": f.get("unreleased", 0) + len(set(f.get("sessions", {})) - set(m.sessions)),
            "workers": f.get("workers"),
            "worker_load": f.get("worker_load"),
            "routes": f.get("routes", []),
            "uptime_s": round(time.monotonic() - request.app["started"], 1),
        }
    )


async def media(request: web.Request) -> web.Response:
    return web.json_response(request.app["media"].listing())


async def upload(request: web.Request) -> web.Response:
    kind = request.query.get("kind", "")
    if kind not in KINDS:
        raise Refused("say what the upload is: ?kind=picture or ?kind=audio")
    cap = MAX_BYTES[kind]
    if request.content_type.startswith("multipart/"):
        reader = await request.multipart()
        field = await reader.next()
        while field is not None and getattr(field, "name", None) != "file":
            field = await reader.next()
        if field is None:
            raise Refused("a multipart upload needs a 'file' field")
        filename, data = field.filename or "upload", bytearray()
        while chunk := await field.read_chunk(1 << 16):
            data += chunk
            if len(data) > cap:
                raise Refused(f"{filename}: larger than {cap // 2**20} MB", 413)
    else:
        filename = request.query.get("name", "upload")
        if request.content_length is not None and request.content_length > cap:
            raise Refused(f"{filename}: larger than {cap // 2**20} MB", 413)
        data = bytearray()
        while chunk := await request.content.read(1 << 16):
            data += chunk
            if len(data) > cap:
                raise Refused(f"{filename}: larger than {cap // 2**20} MB", 413)
    lib: MediaLibrary = request.app["media"]
    facts = await request.app["sessions"].blocking(lib.save_upload, bytes(data), filename, kind)
    return web.json_response(facts, status=201)


async def create_session(request: web.Request) -> web.Response:
    body = await _json(request)
    if not isinstance(body, dict) or not isinstance(body.get("image"), str):
        raise Refused('start a session with {"image": NAME} (a name from /api/media or an upload)')
    m: SessionManager = request.app["sessions"]
    s = await m.create(body["image"], str(body.get("planner", "rules")))
    return web.json_response(
        {**s.snapshot(), "ws": f"/api/sessions/{s.id}/ws", "offer": f"/api/sessions/{s.id}/offer"}, status=201
    )


async def list_sessions(request: web.Request) -> web.Response:
    return web.json_response([s.snapshot() for s in request.app["sessions"].sessions.values()])


async def get_session(request: web.Request) -> web.Response:
    return web.json_response(request.app["sessions"].get(request.match_info["sid"]).snapshot())


async def end_session(request: web.Request) -> web.Response:
    s = request.app["sessions"].get(request.match_info["sid"])
    s.end("ended by the API")
    return web.json_response({"id": s.id, "ending": True}, status=202)


async def offer(request: web.Request) -> web.Response:
    s = request.app["sessions"].get(request.match_info["sid"])
    body = await _json(request)
    if not isinstance(body, dict):
        raise Refused("send the WebRTC offer as {'sdp': ..., 'type': 'offer'}")
    return web.json_response(await s.answer(body.get("sdp"), body.get("type")))


async def commands(request: web.Request) -> web.Response:
    received = time.perf_counter()
    s = request.app["sessions"].get(request.match_info["sid"])
    body = await _json(request)
    items = body if isinstance(body, list) else [body]
    accepted = [await s.command(obj, received) for obj in items]
    return web.json_response({"accepted": accepted}, status=202)


async def websocket(request: web.Request) -> web.WebSocketResponse:
    """Commands in (one JSON object per message; a refusal answers with an `error` event naming its
    "id"), the session's events out, one JSON object per message."""
    s = request.app["sessions"].get(request.match_info["sid"])
    viewer = request.query.get("role") == "viewer"
    ws = web.WebSocketResponse(heartbeat=10.0, max_msg_size=MAX_JSON_BYTES)
    await ws.prepare(request)
    events = s.listen()
    if viewer:
        s.viewer_sockets += 1

    async def send_events():
        while (ev := await events.get()) is not None:
            await ws.send_str(json.dumps(ev, default=str))
        await ws.close()

    sender = asyncio.ensure_future(send_events())
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            received = time.perf_counter()
            try:
                obj = json.loads(msg.data)
            except json.JSONDecodeError as exc:
                await ws.send_str(json.dumps({"event": "error", "message": f"not JSON ({exc.msg})"}))
                continue
            try:
                await s.command(obj, received)
            except Refused:
                pass  # already sent to every listener as an error event
    finally:
        s.listeners.discard(events)
        sender.cancel()
        if viewer:
            s.viewer_socket_closed()
    return ws


# ---- the application ----------------------------------------------------------------------------------


def make_app(manager: SessionManager, media_lib: MediaLibrary, token: str | None, log: Callable[[str], None]):
    app = web.Application(middlewares=[_errors, _auth(token)], client_max_size=MAX_JSON_BYTES)
    app["sessions"], app["media"], app["log"], app["started"] = manager, media_lib, log, time.monotonic()
    app.router.add_get("/", page)
    app.router.add_get("/favicon.ico", lambda request: web.Response(status=204))
    app.router.add_static("/static/", STATIC, follow_symlinks=False)
    app.router.add_get("/health", health)
    app.router.add_get("/api/media", media)
    app.router.add_post("/api/uploads", upload)
    app.router.add_post("/api/sessions", create_session)
    app.router.add_get("/api/sessions", list_sessions)
    app.router.add_get("/api/sessions/{sid}", get_session)
    app.router.add_delete("/api/sessions/{sid}", end_session)
    app.router.add_post("/api/sessions/{sid}/offer", offer)
    app.router.add_post("/api/sessions/{sid}/commands", commands)
    app.router.add_get("/api/sessions/{sid}/ws", websocket)

    async def shutdown(app):
        await manager.close_all()

    app.on_shutdown.append(shutdown)
    return app


async def _serve(
    host: str, port: int, media_dir: Path | None, max_sessions: int, token: str | None, options: dict, log
) -> int:
    loop = asyncio.get_running_loop()
    # aiortc encodes the audio of every track on the default executor: room for all of them at once
    loop.set_default_executor(ThreadPoolExecutor(max_workers=2 * max_sessions + 4, thread_name_prefix="flowact-rtc"))
    setup = ThreadPoolExecutor(max_workers=4, thread_name_prefix="flowact-serve-setup")

    async def blocking(fn, *args, **kwargs):
        return await loop.run_in_executor(setup, partial(fn, *args, **kwargs))

    sock = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    media_lib = MediaLibrary(media_dir)
    manager = SessionManager(media_lib, max_sessions, loop, blocking, options, log)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = None
    try:
        waits = [asyncio.ensure_future(stop.wait()), manager.ready]  # the weights load before "ready"
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            return 0
        manager.ready.result()  # the stream process's failure to start, as a FlowactError
        runner = web.AppRunner(make_app(manager, media_lib, token, log), handle_signals=False, access_log=None)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        bound = sock.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        log(f"flowact serve: http://{shown}:{bound}/ ready (max {max_sessions} sessions; Ctrl-C stops)")
        await asyncio.wait([asyncio.ensure_future(stop.wait()), manager.dead], return_when=asyncio.FIRST_COMPLETED)
        log("flowact serve: stopping")
        return 1 if manager.dead.done() else 0
    finally:
        if runner is not None:
            await runner.cleanup()  # ends every session (on_shutdown), closes sockets
        sock.close()
        await loop.run_in_executor(None, manager.close)  # the stream process quits
        setup.shutdown(wait=False, cancel_futures=True)
        media_lib.close()


def run_server(
    host: str, port: int, media_dir: Path | None, max_sessions: int, token: str | None, options: dict, log
) -> int:
    """Serve until SIGINT/SIGTERM (0), or until the stream process stops on its own (1). `options`:
    the stream process's (workers, preset, preload). Every session ends and both processes stop."""
    return asyncio.run(_serve(host, port, media_dir, max_sessions, token, options, log))
