"""Driving the real daemon in a subprocess."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO


def start_daemon(root: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    log = open(root / "daemon.out", "ab")
    return subprocess.Popen([sys.executable, str(REPO / "train.py"), "--config", str(root / "config.json"),
                             *(args or ("--daemon",))], cwd=root, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200", **(env or {})})


def events(root: Path) -> list[dict]:
    path = root / "logs" / "events.jsonl"
    return [json.loads(l) for l in path.read_text().splitlines()] if path.exists() else []


def wait_for(predicate, timeout: float = 120, every: float = 0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")


def wait_event(root: Path, kind: str, count: int = 1, timeout: float = 120, **match) -> list[dict]:
    def found():
        hits = [e for e in events(root) if e["event"] == kind and all(str(v) in str(e.get(k)) for k, v in match.items())]
        return hits if len(hits) >= count else None
    return wait_for(found, timeout)


def manifests(root: Path) -> list[dict]:
    done = root / "queue" / "done"
    return [{"name": p.name[: -len(".manifest.json")], **json.loads(p.read_text())}
            for p in sorted(done.glob("*.manifest.json"))] if done.exists() else []


def original(name: str) -> str:
    return name.split("--", 1)[1]


INBOX_FOLDERS = ("practice", "feedback")  # the daemon's own folders under inbox/: never entries left behind
