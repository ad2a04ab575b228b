"""What the server keeps of its use: each exchange it answered and each verdict on one, under served/ (its own
folder: the server never writes into queue/ or data/, and the daemon never writes here).

    served/exchanges/<time>-<pid>.jsonl   one line per answered request (serve.record; off: nothing kept)
    served/feedback/<time>-<pid>.jsonl    one line per verdict accepted by POST /v1/feedback

Each line is written whole and fsynced before the request is answered, so what a client was told is kept is
kept across a kill; a file is closed past serve.record_max_bytes and a new one begun, and exchange files older
than serve.keep_days are deleted. A feedback file is deleted only once the daemon has taken all of it (its
cursor, data/feedback/state.json, read here, never written), so an accepted verdict is never lost to pruning.
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from core.config import ServeSection
from core.feedback import FEEDBACK_STATE, SERVED_EXCHANGES, SERVED_FEEDBACK, served_stats
from core.fsutil import fsync_dir


class AppendLog:
    """An append-only JSONL log of one process, in a folder: whole lines, fsynced, a new file past max_bytes."""

    def __init__(self, folder: Path, max_bytes: int):
        self.folder, self.max_bytes = Path(folder), max_bytes
        self.lock = threading.Lock()
        self.fd: int | None = None
        self.size = 0

    def append(self, record: dict) -> None:
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        with self.lock:
            if self.fd is None or self.size >= self.max_bytes:
                self._open()
            written = 0
            while written < len(line):  # a short write (signal, full pipe) goes on where it stopped
                written += os.write(self.fd, line[written:])
            os.fsync(self.fd)
            self.size += len(line)

    def _open(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"{time.strftime('%Y%m%dT%H%M%S')}-{time.time_ns() % 10**9:09d}-{os.getpid()}.jsonl"
        self.fd = os.open(self.folder / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.size = 0
        fsync_dir(self.folder)

    def files(self) -> list[Path]:
        return sorted(self.folder.glob("*.jsonl")) if self.folder.is_dir() else []

    def close(self) -> None:
        with self.lock:
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None


class Recorder:
    def __init__(self, root: Path, settings: ServeSection):
        self.root, self.settings = Path(root), settings
        self.exchanges = AppendLog(self.root / SERVED_EXCHANGES, settings.record_max_bytes)
        self.feedback = AppendLog(self.root / SERVED_FEEDBACK, settings.record_max_bytes)
        self.pruned_at = 0.0

    @property
    def recording(self) -> bool:
        return self.settings.record

    def exchange(self, record: dict) -> None:
        """Keep one answered request (when serve.record is on); prune now and then."""
        if not self.settings.record:
            return
        self.exchanges.append({"time": round(time.time(), 3), **record})
        if time.time() - self.pruned_at > 3600:
            self.prune()

    def find(self, response_id: str) -> dict | None:
        """The exchange a response id names, newest files first (None: unknown, or pruned)."""
        needle = json.dumps(response_id)
        for path in reversed(self.exchanges.files()):
            with open(path, "rb") as f:
                for raw in f:
                    if needle.encode() in raw and raw.endswith(b"\n"):
                        record = json.loads(raw)
                        if record.get("id") == response_id:
                            return record
        return None

    def recent(self, n: int) -> list[dict]:
        """The newest n exchanges, newest first, as the status page shows them (question and answer cut short)."""
        out: list[dict] = []
        for path in reversed(self.exchanges.files()):
            with open(path, "rb") as f:
                f.seek(max(0, path.stat().st_size - (1 << 20)))
                lines = f.read().split(b"\n")[1 if f.tell() > (1 << 20) else 0:]
            for raw in reversed([line for line in lines if line]):
                try:
                    x = json.loads(raw)
                except ValueError:
                    continue  # the first line of a tail read mid-way, or one a kill cut short
                asked = x["messages"][-1]["content"] if "messages" in x else x["prompts"][0]
                out.append({"id": x["id"], "time": x["time"], "model": x["model"], "question": asked[:300],
                            "answer": x["answers"][0][:600]})
                if len(out) == n:
                    return out
        return out

    def prune(self, now: float | None = None) -> list[str]:
        """Delete exchange files older than serve.keep_days, and feedback files as old that the daemon has read
        to the end; never the file being written."""
        now = time.time() if now is None else now
        self.pruned_at = now
        cutoff = now - self.settings.keep_days * 86400
        try:
            cursor = json.loads((self.root / FEEDBACK_STATE).read_text()).get("cursor", {})
        except (OSError, ValueError):
            cursor = {}
        removed = []
        for log, taken in ((self.exchanges, None), (self.feedback, cursor)):
            for path in log.files()[:-1]:
                st = path.stat()
                if st.st_mtime < cutoff and (taken is None or taken.get(path.name, -1) >= st.st_size):
                    path.unlink(missing_ok=True)
                    removed.append(path.name)
        return removed

    def stats(self) -> dict:
        return {"recording": self.settings.record, **served_stats(self.root)}

    def close(self) -> None:
        self.exchanges.close()
        self.feedback.close()

