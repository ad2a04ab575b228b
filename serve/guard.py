"""What every request meets before any route, as an ASGI middleware: nothing of a request's body is read, and no
route runs, for a request that would be refused anyway.

- the Host allow-list, while no API key is set (`serve.allowed_hosts`): a web page a user visits cannot reach a
  key-less loopback server through DNS rebinding;
- the API key, for the API and the status data (`serve.api_key_env`), checked before the body;
- the body size (`serve.max_body_bytes`), from Content-Length before parsing; a body without one (chunked) is
  gathered here up to the limit, then handed on whole;
- the requests waiting for a decode slot (`serve.max_waiting`): past it 429 with Retry-After, so a burst is bounded
  and every request that was accepted is answered.
"""
from __future__ import annotations

import hmac
import json

from core.config import ServeSection

from .protocol import APIError

PROTECTED = ("/v1/", "/status.json", "/curve.json")  # the page (/) and /health carry no data


def hostname(header: str) -> str:
    """'127.0.0.1:8000' -> '127.0.0.1'; '[::1]:8000' -> '::1'."""
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


async def refuse(send, error: APIError, headers: tuple = ()) -> None:
    body = json.dumps(error.body()).encode()
    await send({"type": "http.response.start", "status": error.status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


class Guard:
    def __init__(self, app, *, settings: ServeSection, api_key: str | None, waiting):
        """`waiting()`: completions waiting for a decode slot now."""
        self.app, self.settings, self.api_key, self.waiting = app, settings, api_key, waiting

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        error = self.check(scope, headers)
        if error is None and "content-length" not in headers and scope["method"] in ("POST", "PUT", "PATCH"):
            receive, error = await self.gathered(receive)
        if error is not None:
            return await refuse(send, error, ((b"retry-after", b"1"),) if error.status == 429 else ())
        return await self.app(scope, receive, send)

    def check(self, scope, headers: dict[str, str]) -> APIError | None:
        s, path = self.settings, scope["path"]
        if not self.api_key and hostname(headers.get("host", "")) not in s.allowed_hosts:
            return APIError(403, f"Host {headers.get('host', '')!r} is not allowed while no API key is set; add it "
                                 "to serve.allowed_hosts or set serve.api_key_env", code="host_not_allowed")
        if self.api_key and path.startswith(PROTECTED) and not hmac.compare_digest(
                headers.get("authorization", "").encode(), f"Bearer {self.api_key}".encode()):
            return APIError(401, "missing or wrong API key: send the header 'Authorization: Bearer <key>' "
                                 f"with the key in ${s.api_key_env}", code="invalid_api_key")
        length = headers.get("content-length", "0")
        if not length.isdigit() or int(length) > s.max_body_bytes:
            return self.too_large()
        if scope["method"] == "POST" and path.startswith("/v1/") and self.waiting() >= s.max_waiting:
            return APIError(429, f"{s.max_waiting} completions are waiting already (serve.max_waiting); retry in a "
                                 "moment", code="too_many_waiting")
        return None

    def too_large(self) -> APIError:
        return APIError(413, f"the body is over {self.settings.max_body_bytes} bytes (serve.max_body_bytes)",
                        code="body_too_large")

    async def gathered(self, receive):
        """(a `receive` that hands on the whole body at once, None), or (None, 413) once it passes the limit."""
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return receive, None  # the client left: the app sees it as it would
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.settings.max_body_bytes:
                return None, self.too_large()
        handed = False

        async def replay():
            nonlocal handed
            if handed:
                return await receive()
            handed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return replay, None
