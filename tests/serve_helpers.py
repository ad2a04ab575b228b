"""Driving `train.py --serve` in a subprocess, on loopback."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.conftest import REPO


class Server:
    def __init__(self, root: Path, *args: str, env: dict | None = None, port: int = 0):
        self.root = root
        self.out = root / f"serve-{time.time_ns()}.out"
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "train.py"), "--config", str(root / "config.json"), "--serve",
             "--port", str(port), *args], cwd=root, stdout=open(self.out, "wb"), stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200", **(env or {})})
        self.port = self._port()
        self.url = f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def _port(self, timeout: float = 120) -> int:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if m := re.search(r"listening on http://127\.0\.0\.1:(\d+)", self.output()):
                return int(m.group(1))
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited ({self.proc.returncode}):\n{self.output()}")
            time.sleep(0.1)
        raise AssertionError(f"the server did not start:\n{self.output()}")

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            status, _ = self.get("/health")
            if status == 200:
                return
            time.sleep(0.1)
        raise AssertionError(f"the server did not load its model:\n{self.output()}")

    def request(self, method: str, path: str, body=None, headers: dict | None = None, raw: bytes | None = None):
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=300) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def get(self, path: str, **kw):
        return self.request("GET", path, **kw)

    def post(self, path: str, body=None, **kw):
        return self.request("POST", path, body, **kw)

    def stream(self, path: str, body: dict):
        """The parsed `data:` events of a streamed response, up to [DONE]."""
        req = urllib.request.Request(self.url + path, data=json.dumps({**body, "stream": True}).encode(),
                                     headers={"Content-Type": "application/json"})
        events = []
        with urllib.request.urlopen(req, timeout=300) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            for line in r:
                line = line.decode().strip()
                if line == "data: [DONE]":
                    return events
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
        raise AssertionError(f"the stream ended without [DONE]: {events[-3:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def chat(content: str, **fields) -> dict:
    return {"messages": [{"role": "user", "content": content}], **fields}
