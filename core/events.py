"""What happened, for people and for machines.

Each event is one line in logs/daemon_YYYYMMDD.log (a new file each day), one
JSON object in logs/events.jsonl, and one line on the console. Listeners (the
daemon's status file) see every event as it is emitted, so a lower layer reports
what it is doing without knowing who shows it.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Callable

from rich.console import Console
from rich.markup import escape

from .faults import fault_point


CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\udc80-\udcff]")  # tabs stay; bytes that were not UTF-8 are surrogates


def one_line(text: str) -> str:
    """An event's message as one writable line: control characters (a file name's newline) and bytes that are
    not UTF-8 (a file name's) shown escaped, `\\n`, `\\xff`, so the log keeps one line per event."""
    return CONTROL.sub(lambda m: f"\\x{ord(m[0]) & 0xFF:02x}" if m[0] >= "\udc80" else repr(m[0])[1:-1], text)


def duration(seconds: float | None) -> str:
    """For people: 3725 -> '1h02m', 95 -> '1m35s', 7 -> '7s'; None -> '?'."""
    if seconds is None:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class EventLog:
    """`logs_dir` None: the console only (a rank other than 0 of a multi-process launch writes no log)."""

    def __init__(self, logs_dir: Path | None, console: Console | None = None, *, prefix: str = ""):
        self.dir = Path(logs_dir) if logs_dir is not None else None
        if self.dir:
            self.dir.mkdir(parents=True, exist_ok=True)
        self.console = console or Console(stderr=True, highlight=False)
        self.prefix = prefix
        self.listeners: list[Callable[[dict], None]] = []
        self.unwritten = 0  # events the log could not take since the last one it did (a full disk)

    def daily_path(self, now: float | None = None) -> Path:
        return self.dir / f"daemon_{time.strftime('%Y%m%d', time.localtime(now))}.log"

    def block(self, text: str) -> None:
        """A multi-line block (the evaluation view) for the daily log and the console."""
        if self.dir:
            with open(self.daily_path(), "a", encoding="utf-8") as f:
                f.write(text + "\n")
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def emit(self, kind: str, message: str, **fields) -> None:
        message = one_line(message)
        now = time.time()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
        record = {"time": round(now, 3), "event": kind, "message": message, **fields}
        if self.dir:
            try:
                fault_point("events.write")
                with open(self.daily_path(now), "a", encoding="utf-8") as f:
                    f.write(f"{stamp} {kind:<12} {message}\n")
                with open(self.dir / "events.jsonl", "a", encoding="utf-8") as f:
                    f.write(json.dumps(record, default=lambda v: one_line(str(v))) + "\n")
                self.unwritten = 0
            except OSError as e:  # a full disk: the log is for people; the console still has every event
                if not self.unwritten:
                    self.console.print(f"[bold red]cannot write the log in {escape(str(self.dir))}: {escape(str(e))}; "
                                       "the daemon goes on, its events on the console only until the log can "
                                       "take them[/bold red]", soft_wrap=True)
                self.unwritten += 1
        self.console.print(f"[dim]{stamp}[/dim] {escape(self.prefix)}[bold]{kind}[/bold] {escape(message)}",
                           markup=True, soft_wrap=True)
        for listener in self.listeners:
            listener(record)

    def phase(self, name: str, message: str, **fields) -> None:
        """A stage of work begins (reading, encoding, training, evaluating, saving, promotion)."""
        self.emit("phase", message, phase=name, **fields)
