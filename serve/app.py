"""`train.py --serve`: the model that keeps learning, behind an OpenAI-compatible API, with a live status page.

    GET  /health                 200 once the model is loaded (503 while loading)
    GET  /v1/models              current, base and each committed adapter version
    POST /v1/chat/completions    chat; stream: true for server-sent events
    POST /v1/completions         raw prompts
    GET  /                       the status page (it reads /status.json and /curve.json)

The server runs beside the daemon on the same root, as its own process: it never takes the
root's lock and writes nothing under queue/ or data/; it only reads what the daemon
committed (see `ModelHost`). Requests are answered in shared batches by one worker thread
through the sampling engine.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import os
import secrets
import socket
import threading
import time
import uuid
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request as HTTPRequest
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException

from core.config import Config
from core.errors import ConfigError
from core.events import EventLog
from daemon.status import collect
from inference.sampling import Request, Result
from monitor.report import curve, read_events

from .host import ModelHost, UnknownModel
from .protocol import APIError, ChatRequest, CompletionRequest, Sampling, validation_message

FINISH = {"length": "length"}  # every other way to end (a stop token or string) is OpenAI's "stop"


def create_app(host: ModelHost, *, root: Path, config: Config, api_key: str | None) -> FastAPI:
    events = host.events
    app = FastAPI(title="selfcorrect-daemon", docs_url=None, redoc_url=None)
    limits = config.serve

    @app.exception_handler(APIError)
    async def _api_error(_, e: APIError):
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_, e: RequestValidationError):
        message, param = validation_message(e.errors())
        return JSONResponse(APIError(400, message, param).body(), status_code=400)

    @app.exception_handler(HTTPException)
    async def _http(_, e: HTTPException):
        return JSONResponse(APIError(e.status_code, str(e.detail)).body(), status_code=e.status_code)

    @app.exception_handler(Exception)
    async def _bug(_, e: Exception):  # logged with its cause; the server keeps serving
        events.emit("error", f"serve: {type(e).__name__}: {e}")
        return JSONResponse(APIError(500, f"internal error: {type(e).__name__}: {e}").body(), status_code=500)

    def authorize(request: HTTPRequest) -> None:
        if api_key and not hmac.compare_digest(request.headers.get("authorization", "").encode(),
                                               f"Bearer {api_key}".encode()):
            raise APIError(401, "missing or wrong API key: send the header 'Authorization: Bearer <key>' "
                                f"with the key in ${limits.api_key_env}", code="invalid_api_key")

    def loaded() -> None:
        if host.error:
            raise APIError(503, f"the model did not load: {host.error}")
        if not host.ready.is_set():
            raise APIError(503, "the model is loading; retry in a few seconds", code="model_loading")

    def version_of(name: str) -> str:
        try:
            return host.resolve(name)
        except UnknownModel:
            known = ", ".join(m["id"] for m in host.models())
            raise APIError(404, f"model {name!r} does not exist; this server has: {known}", "model",
                           "model_not_found") from None

    def engine_requests(body: Sampling, prompts: list[dict]) -> list[Request]:
        """Each prompt (messages or raw text) as an engine request, checked against the limits and the context."""
        if body.n > limits.max_n:
            raise APIError(400, f"n: at most {limits.max_n} completions per request (serve.max_n)", "n")
        if body.max_tokens is not None and body.max_tokens > limits.max_tokens:
            raise APIError(400, f"max_tokens: at most {limits.max_tokens} (serve.max_tokens; got {body.max_tokens})",
                           "max_tokens")
        seed = body.seed if body.seed is not None else secrets.randbelow(2**31)
        out = []
        for prompt in prompts:
            r = Request(**prompt, max_new_tokens=body.max_tokens or limits.max_tokens, temperature=body.temperature,
                        top_p=body.top_p, top_k=body.top_k, n=body.n, seed=seed, stop=tuple(body.stop or ()),
                        logprobs=body.wants_logprobs,
                        cut_runaways=False)
            used = host.counter.prompt_tokens(r)
            if used >= host.context:
                field = "messages" if r.messages is not None else "prompt"
                raise APIError(413, f"{field}: the prompt takes {used} tokens; the model's context is {host.context}; "
                                    f"shorten it", field, "context_length_exceeded")
            room = host.context - used
            if body.max_tokens is not None and body.max_tokens > room:
                raise APIError(400, f"max_tokens: the prompt takes {used} of the {host.context} tokens of context; "
                                    f"at most {room} are left (got {body.max_tokens})", "max_tokens")
            r.max_new_tokens = min(r.max_new_tokens, room)
            out.append(r)
        return out

    async def answer(version: str, requests: list[Request]) -> list[Result]:
        return await asyncio.wrap_future(host.batcher.submit(version, requests))

    def token_texts(tokens: list[int]) -> list[str]:
        special = set(host.counter.tokenizer.all_special_ids)
        return [host.counter.tokenizer.decode([t]) for t in tokens if t not in special]

    def usage(results: list[Result]) -> dict:
        prompt = sum(r.prompt_tokens for r in results)
        completion = sum(r.completion_tokens for r in results)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def chat_logprobs(c) -> dict | None:
        if c.logprobs is None:
            return None
        return {"content": [{"token": t, "logprob": lp, "bytes": list(t.encode()), "top_logprobs": []}
                            for t, lp in zip(token_texts(c.tokens), c.logprobs)]}

    def text_logprobs(c) -> dict | None:
        if c.logprobs is None:
            return None
        texts, offsets, at = token_texts(c.tokens), [], 0
        for t in texts:
            offsets.append(at)
            at += len(t)
        return {"tokens": texts, "token_logprobs": c.logprobs[:len(texts)], "top_logprobs": None,
                "text_offset": offsets}

    # -- the API ---------------------------------------------------------------------------------------

    @app.get("/health")
    async def health():
        if host.error or not host.ready.is_set():
            return JSONResponse({"status": "error" if host.error else "loading", "error": host.error}, 503)
        return {"status": "ok", "current": host.current()}

    @app.get("/v1/models")
    async def models(request: HTTPRequest):
        authorize(request)
        return {"object": "list", "data": host.models()}

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest, request: HTTPRequest):
        authorize(request)
        loaded()
        version = version_of(body.model)
        requests = engine_requests(body, [{"messages": [m.plain() for m in body.messages]}])
        if body.stream:
            return stream(version, requests, body, chat=True)
        results = await answer(version, requests)
        choices = [{"index": k, "message": {"role": "assistant", "content": c.text},
                    "finish_reason": FINISH.get(c.finish_reason, "stop"), "logprobs": chat_logprobs(c)}
                   for k, c in enumerate(results[0].completions)]
        return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                "model": version, "choices": choices, "usage": usage(results)}

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: HTTPRequest):
        authorize(request)
        loaded()
        version = version_of(body.model)
        requests = engine_requests(body, [{"prompt": p} for p in body.prompts])
        if body.stream:
            return stream(version, requests, body, chat=False)
        results = await answer(version, requests)
        choices = [{"index": k * body.n + j, "text": c.text, "finish_reason": FINISH.get(c.finish_reason, "stop"),
                    "logprobs": text_logprobs(c)}
                   for k, r in enumerate(results) for j, c in enumerate(r.completions)]
        return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
                "model": version, "choices": choices, "usage": usage(results)}

    def stream(version: str, requests: list[Request], body: Sampling, *, chat: bool) -> StreamingResponse:
        """Server-sent events: a chunk per new piece of text of each choice, then each choice's finish reason,
        then `[DONE]`. A client that goes away cancels its rows at the next token, freeing their slots."""
        ident = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        created, n = int(time.time()), body.n

        def event(payload: dict) -> str:
            return f"data: {json.dumps(payload)}\n\n"

        def chunk(index: int, text: str | None, finish: str | None = None, role: bool = False) -> str:
            if chat:
                delta = {"role": "assistant", "content": ""} if role else {} if text is None else {"content": text}
                choice = {"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}
            else:
                choice = {"index": index, "text": text or "", "finish_reason": finish, "logprobs": None}
            return event({"id": ident, "object": "chat.completion.chunk" if chat else "text_completion",
                          "created": created, "model": version, "choices": [choice]})

        async def events():
            loop = asyncio.get_running_loop()
            arrived: asyncio.Queue = asyncio.Queue()
            cancel = threading.Event()
            for k, r in enumerate(requests):
                r.cancel = cancel
                r.on_token = (lambda k: lambda s, t: loop.call_soon_threadsafe(arrived.put_nowait, (k * n + s, t)))(k)
            future = asyncio.wrap_future(host.batcher.submit(version, requests))
            # the tokens' callbacks were queued on this loop before the result: None comes after the last token
            future.add_done_callback(lambda _: arrived.put_nowait(None))
            tokens: dict[int, list[int]] = {c: [] for c in range(len(requests) * n)}
            sent = dict.fromkeys(tokens, "")
            try:
                if chat:
                    for c in tokens:
                        yield chunk(c, None, role=True)
                while (item := await arrived.get()) is not None:
                    c, t = item
                    tokens[c].append(t)
                    request = requests[c // n]
                    text = host.counter.text(request, tokens[c])
                    hold = max((len(s) for s in request.stop), default=1) - 1  # a stop string may be starting
                    text = text[:len(text) - hold].rstrip("\ufffd")  # and a character may be half decoded
                    if len(text) > len(sent[c]) and text.startswith(sent[c]):
                        yield chunk(c, text[len(sent[c]):])
                        sent[c] = text
                try:
                    results = future.result()
                except Exception as e:
                    yield event(APIError(500, f"generation failed: {type(e).__name__}: {e}").body())
                    return
                for k, result in enumerate(results):
                    for s, comp in enumerate(result.completions):
                        c = k * n + s
                        rest = comp.text[len(sent[c]):] if comp.text.startswith(sent[c]) else ""
                        yield chunk(c, rest or None, FINISH.get(comp.finish_reason, "stop"))
                if body.stream_options and body.stream_options.include_usage:
                    yield event({"id": ident, "object": "chat.completion.chunk" if chat else "text_completion",
                                 "created": created, "model": version, "choices": [], "usage": usage(results)})
                yield "data: [DONE]\n\n"
            finally:
                cancel.set()  # the client is gone, or all is sent: either way the rows may end

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    # -- the status page -------------------------------------------------------------------------------

    page = resources.files("serve").joinpath("status.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse)
    async def status_page():
        return page  # a shell without data: it fetches /status.json (with the key from the URL's #key=...)

    @app.get("/status.json")
    async def status(request: HTTPRequest):
        authorize(request)
        data = await asyncio.to_thread(collect, root)
        batcher = host.batcher
        data["server"] = {"ready": host.ready.is_set(), "error": host.error, "model": config.model.name_or_path,
                          "current": host.current() if host.ready.is_set() else None, "loaded": list(host.loaded),
                          "answered": dict(host.answered), "finished": dict(host.finished), "waiting": batcher.waiting if batcher else 0,
                          "busy": bool(batcher and batcher.busy), "uptime_s": round(time.time() - host.started, 1)}
        return data

    @app.get("/curve.json")
    async def curve_data(request: HTTPRequest):
        authorize(request)
        return await asyncio.to_thread(lambda: curve(read_events(root)))

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
    events.emit("serve", f"listening on http://{shown}:{port} (OpenAI API at /v1, status page at /)"
                + ("; API key required" if api_key else ""), host=host, port=port)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    server.run(sockets=[sock])
    events.emit("serve", "stopped")
    return 0
