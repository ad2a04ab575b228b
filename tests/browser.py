"""A real Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe: JSON messages ending in
NUL on the child's file descriptors 3 and 4), with nothing but the standard library."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest


def chromium_or_skip() -> str:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI"):
            raise AssertionError("chromium is missing; .ci/run installs Debian's chromium package")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return chromium


class Browser:
    def __init__(self, url: str, profile):
        to_child, self._to_child = os.pipe()
        self._from_child, from_child = os.pipe()

        def descriptors():  # in the child: its ends of the pipes as 3 (commands in) and 4 (answers out)
            os.dup2(to_child, 3)
            os.dup2(from_child, 4)

        self.proc = subprocess.Popen(
            [chromium_or_skip(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--remote-debugging-pipe", f"--user-data-dir={profile}", url],
            preexec_fn=descriptors, pass_fds=(3, 4, to_child, from_child), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.close(to_child)
        os.close(from_child)
        self._next, self._buffer = 0, b""
        deadline = time.time() + 60
        while True:
            pages = [t for t in self.command("Target.getTargets")["targetInfos"] if t["type"] == "page"]
            if pages or time.time() > deadline:
                break
            time.sleep(0.2)
        self.session = self.command("Target.attachToTarget", targetId=pages[0]["targetId"], flatten=True)["sessionId"]

    def command(self, method: str, session: str | None = None, **params) -> dict:
        self._next += 1
        message = {"id": self._next, "method": method, "params": params, **({"sessionId": session} if session else {})}
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self._buffer:
                chunk = os.read(self._from_child, 1 << 16)
                if not chunk:
                    raise AssertionError("chromium closed its DevTools pipe")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            answer = json.loads(raw)
            if answer.get("id") == self._next:
                if "error" in answer:
                    raise AssertionError(f"{method}: {answer['error']}")
                return answer["result"]

    def evaluate(self, expression: str):
        """A JavaScript expression's value in the page (a promise is awaited)."""
        result = self.command("Runtime.evaluate", self.session, expression=expression, awaitPromise=True,
                              returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"never true in the page: {expression}")

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        os.close(self._to_child)
        os.close(self._from_child)
