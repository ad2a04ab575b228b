"""What may enter the queue: complete, valid .jsonl files from inbox/ (or dropped straight into queue/<p>/).

A file is complete when it arrived by rename (the watcher saw it), or when it has
not changed for `daemon.settle_seconds`. Dotfiles and partial-download names are
never touched; symlinks, folders, FIFOs and non-.jsonl files are moved to failed/
with the reason, without being opened, so they can never block the loop.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from training.data import read_examples
from training.errors import DataError

from .queue import PRIORITIES, STAMPED, Queue, ignored, refusal


class Intake:
    def __init__(self, queue: Queue, events, *, settle_seconds, max_line_bytes, watcher=None):
        self.queue = queue
        self.events = events
        self.settle_seconds = settle_seconds  # callables, so live config edits apply
        self.max_line_bytes = max_line_bytes
        self.watcher = watcher
        self.waiting = 0  # files seen but not yet settled at the last scan

    def _complete(self, path: Path, now: float) -> bool:
        if self.watcher is not None and self.watcher.renamed_in(path):
            return True
        return now - os.lstat(path).st_mtime >= self.settle_seconds()

    def _candidates(self) -> list[tuple[Path, str]]:
        """Unadmitted entries, oldest first: files found in one scan (say, at start-up) are
        stamped in the order they were written, the best evidence of arrival there is."""
        found = [(self.queue.inbox / n, "normal") for n in os.listdir(self.queue.inbox)]
        for priority in PRIORITIES:
            folder = self.queue.folder(priority)
            found += [(folder / n, priority) for n in os.listdir(folder) if not STAMPED.match(n)]

        def written(entry):
            try:
                return (os.lstat(entry[0]).st_mtime_ns, entry[0].name)
            except FileNotFoundError:
                return (0, entry[0].name)
        return sorted(found, key=written)

    def scan(self, now: float | None = None) -> int:
        """Admit every complete file; returns how many were admitted."""
        now = time.time() if now is None else now
        admitted, waiting = 0, 0
        for path, priority in self._candidates():
            if ignored(path.name):
                continue
            try:
                reason = refusal(path)
                if reason:
                    self.queue.fail(path, {"file": path.name, "reason": reason, "problems": []})
                    self.events.emit("refused", f"{path.name}: {reason}", file=path.name)
                    continue
                if not self._complete(path, now):
                    waiting += 1
                    continue
                read_examples(path, max_line_bytes=self.max_line_bytes())
            except FileNotFoundError:
                continue  # removed or renamed by its writer since the listing
            except DataError as e:
                failed = self.queue.fail(path, e.report())
                self.events.emit("failed", f"{e} -> {failed.parent.name}/", file=path.name, problems=e.problems)
                continue
            finally:
                if self.watcher is not None:
                    self.watcher.forget(path)
            target = self.queue.admit(path, priority)
            admitted += 1
            self.events.emit("queued", f"{path.name} -> queue/{priority}/{target.name}", file=path.name,
                             priority=priority)
        self.waiting = waiting
        return admitted
