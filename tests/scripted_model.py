"""A model on loopback that speaks the OpenAI chat API, its answers scripted by the test: the judge, the student
and the ACE roles of the tests stand on it (the providers reach it through the real `openai` client)."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ScriptedModel(ThreadingHTTPServer):
    """Subclasses answer `reply(body)` with the answer's text, or {"content": text, "logprobs": {...}}, or
    (status, error body). Used as a context manager, it serves for the duration of the block."""

    model = "scripted"

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/v1"

    def provider(self, **fields) -> dict:
        """Its `providers` entry for config.json."""
        return {"kind": "openai", "base_url": self.base_url, "model": self.model, **fields}

    def reply(self, body: dict):
        raise NotImplementedError


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        answer = self.server.reply(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        if isinstance(answer, tuple):
            status, body = answer
        else:
            answer = answer if isinstance(answer, dict) else {"content": answer}
            choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": answer["content"]}}
            if "logprobs" in answer:
                choice["logprobs"] = answer["logprobs"]
            status, body = 200, {"id": "x", "object": "chat.completion", "created": 0, "model": self.server.model,
                                 "choices": [choice],
                                 "usage": {"prompt_tokens": 10, "completion_tokens": 12, "total_tokens": 22}}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
