"""`selfcorrect serve`: the model that keeps learning, behind an OpenAI-compatible API, with a live status page.

    GET  /health                 200 once the model is loaded (503 while loading)
    GET  /v1/models              current, base and each committed adapter version
    POST /v1/chat/completions    chat; stream: true for server-sent events
    POST /v1/completions         raw prompts
    POST /v1/feedback            a verdict (good / bad, a correction) on a served answer: it becomes training
    GET  /                       the status page (it reads /status.json and /curve.json)

The server runs beside the daemon on the same root, as its own process: it never takes the
root's lock and writes nothing under queue/ or data/; it only reads what the daemon
committed (see `ModelHost`). Requests are answered in shared batches by one worker thread
through the sampling engine.

This module is the routes; the serving objects (serving.py: chat and text completions, in full or streamed) and
the host are built once at start-up and kept in `app.state`; request and response bodies are protocol.py's models.
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import socket
import threading
import time
from importlib import resources
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request as HTTPRequest
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException

from core.config import Config
from core.errors import ConfigError
from core.events import EventLog
from core.feedback import parse as parse_feedback
from daemon.status import collect
from monitor.report import curve, read_events

from .host import ModelHost, UnknownModel
from .protocol import (APIError, ChatCompletion, ChatRequest, CompletionRequest, Health, ModelList, TextCompletion,
                       validation_message)
from .guard import Guard
from .record import Recorder
from .serving import ServingChat, ServingCompletion, ServingFeedback

router = APIRouter()


# -- what the API routes check (the Host, the key, the body size and the backlog are checked before: guard.py) --

def loaded_version(request: HTTPRequest, name: str) -> str:
    """The adapter version a request's `model` names, once the model is loaded (503 before, 404 for no such)."""
    host: ModelHost = request.app.state.host
    if host.error:
        raise APIError(503, f"the model did not load: {host.error}")
    if not host.ready.is_set():
        raise APIError(503, "the model is loading; retry in a few seconds", code="model_loading")
    try:
        return host.resolve(name)
    except UnknownModel:
        known = ", ".join(m["id"] for m in host.models())
        raise APIError(404, f"model {name!r} does not exist; this server has: {known}", "model",
                       "model_not_found") from None


# -- the API -------------------------------------------------------------------------------------------------

@router.get("/health", response_model=Health, response_model_exclude_none=True)
async def health(request: HTTPRequest):
    host: ModelHost = request.app.state.host
    if host.error or not host.ready.is_set():
        return JSONResponse(Health(status="error" if host.error else "loading", error=host.error).model_dump(
            exclude_none=True), 503)
    return Health(status="ok", current=host.current())


@router.get("/v1/models", response_model=ModelList)
async def models(request: HTTPRequest):
    return ModelList(data=request.app.state.host.models())


async def answer(serving: ServingChat | ServingCompletion, body, request: HTTPRequest):
    version = loaded_version(request, body.model)
    requests = serving.requests(body)
    if body.stream:
        return serving.streamed(version, requests, body)
    return await serving.full(version, requests, body, request.is_disconnected)


@router.post("/v1/chat/completions", response_model=ChatCompletion)
async def chat(body: ChatRequest, request: HTTPRequest):
    return await answer(request.app.state.chat, body, request)


@router.post("/v1/completions", response_model=TextCompletion)
async def completions(body: CompletionRequest, request: HTTPRequest):
    return await answer(request.app.state.completion, body, request)


@router.post("/v1/feedback")
async def feedback(request: HTTPRequest):
    try:
        body = json.loads(await request.body())
    except ValueError as e:
        raise APIError(400, f"the body is not valid JSON: {e}") from None
    try:
        verdict = parse_feedback(body, request.app.state.config.feedback.max_chars)
    except ValueError as e:
        head = str(e).split(":", 1)[0]
        raise APIError(400, str(e), head if " " not in head else None) from None
    return await request.app.state.feedback.accept(verdict)


# -- the status page -----------------------------------------------------------------------------------------

@router.get("/", response_class=HTMLResponse)
async def status_page(request: HTTPRequest):
    return request.app.state.page  # a shell without data: it fetches /status.json (with the key from #key=...)


@router.get("/status.json")
async def status(request: HTTPRequest):
    state = request.app.state
    host: ModelHost = state.host
    data = await asyncio.to_thread(collect, state.root)
    batcher = host.batcher
    data["server"] = {"ready": host.ready.is_set(), "error": host.error, "model": state.config.model.name_or_path,
                      "current": host.current() if host.ready.is_set() else None, "loaded": list(host.loaded),
                      "answered": dict(host.answered), "finished": dict(host.finished),
                      "waiting": batcher.waiting if batcher else 0, "busy": bool(batcher and batcher.busy),
                      "uptime_s": round(time.time() - host.started, 1),
                      "recent": await asyncio.to_thread(state.recorder.recent, 10)}
    return data


@router.get("/curve.json")
async def curve_data(request: HTTPRequest):
    root = request.app.state.root
    return await asyncio.to_thread(lambda: curve(read_events(root)))


# -- errors, in the OpenAI shape -----------------------------------------------------------------------------

async def api_error(_, e: APIError):
    return JSONResponse(e.body(), status_code=e.status, headers={"Retry-After": "1"} if e.status == 429 else None)


async def invalid_body(_, e: RequestValidationError):
    message, param = validation_message(e.errors())
    return JSONResponse(APIError(400, message, param).body(), status_code=400)


async def http_error(_, e: HTTPException):
    return JSONResponse(APIError(e.status_code, str(e.detail)).body(), status_code=e.status_code)


async def internal_error(request: HTTPRequest, e: Exception):  # logged with its cause; the server keeps serving
    request.app.state.host.events.emit("error", f"serve: {type(e).__name__}: {e}")
    return JSONResponse(APIError(500, f"internal error ({type(e).__name__}); the server's log has the details"
                                 ).body(), status_code=500)


def create_app(host: ModelHost, *, root: Path, config: Config, api_key: str | None) -> FastAPI:
    """The app with its serving objects, built once: the routes find them in `app.state`."""
    app = FastAPI(title="selfcorrect-daemon", docs_url=None, redoc_url=None)
    app.state.host, app.state.root, app.state.config, app.state.api_key = host, root, config, api_key
    app.state.recorder = recorder = Recorder(root, config.serve)
    app.state.chat = ServingChat(host, config.serve, recorder)
    app.state.completion = ServingCompletion(host, config.serve, recorder)
    app.state.feedback = ServingFeedback(recorder, config)
    app.state.page = resources.files("serve").joinpath("status.html").read_text(encoding="utf-8")
    for kind, handler in ((APIError, api_error), (RequestValidationError, invalid_body), (HTTPException, http_error),
                          (Exception, internal_error)):
        app.add_exception_handler(kind, handler)
    app.include_router(router)
    app.add_middleware(Guard, settings=config.serve, api_key=api_key,
                       waiting=lambda: host.batcher.waiting if host.batcher else 0)
    return app


def serve(config: Config, root: Path, events: EventLog, *, host: str | None = None, port: int | None = None) -> int:
    """Listen at once (503 while the model loads), load the model in a thread, serve until SIGINT or SIGTERM."""
    import uvicorn

    api_key = None
    if config.serve.api_key_env:
        api_key = os.environ.get(config.serve.api_key_env)
        if not api_key:
            raise ConfigError("config.json", [f"serve.api_key_env: the environment variable "
                                              f"{config.serve.api_key_env} is empty or not set; export the key"])
    host = host or config.serve.host
    port = config.serve.port if port is None else port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        raise ConfigError("config.json", [f"serve: cannot listen on {host}:{port} ({e.strerror}); pick another "
                                          f"--port or stop what uses it"]) from None
    sock.listen(2048)  # connections wait in the backlog from now on, until uvicorn accepts them
    port = sock.getsockname()[1]
    model_host = ModelHost(config, root, events)
    app = create_app(model_host, root=root, config=config, api_key=api_key)
    threading.Thread(target=model_host.load, name="serve-load", daemon=True).start()
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    if not api_key and not ipaddress.ip_address(socket.getaddrinfo(host, None)[0][4][0]).is_loopback:
        events.emit("warning", f"serve: listening on {shown}, beyond this machine, with no API key: anyone who can "
                    "reach it can use the model and read the status; set serve.api_key_env")
    events.emit("serve", f"listening on http://{shown}:{port} (OpenAI API at /v1, status page at /)"
                + ("; API key required" if api_key else ""), host=host, port=port)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    server.run(sockets=[sock])
    events.emit("serve", "stopped")
    return 0
