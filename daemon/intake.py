"""What may enter the queue: complete, valid .jsonl files from inbox/ (or dropped straight into queue/<p>/),
and practice files from inbox/practice/.

A file is complete when it arrived by rename (the watcher saw it), or when it has
not changed for `daemon.settle_seconds`. Dotfiles and partial-download names are
never touched; symlinks, folders, FIFOs and non-.jsonl files are moved to failed/
with the reason, without being opened, so they can never block the loop.

A file is parsed once: the examples read here to check it are kept (up to
PARSED_BYTES of files) for the claim that trains it, as long as the file is the same
one (inode, size, mtime survive our renames). After a restart, the claim reads it again.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from core.config import Config
from core.data import Example, read_examples
from core.errors import DataError
from core.practice import read_problems

from .queue import PRACTICE, PRIORITIES, STAMPED, Job, Queue, ignored, refusal


PARSED_BYTES = 64 << 20  # the most file bytes whose examples are kept for their claim


def _signature(path: Path) -> tuple[int, int, int]:
    st = os.lstat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns


class Intake:
    def __init__(self, queue: Queue, events, *, config: Config, watcher=None):
        self.queue = queue
        self.events = events
        self.config = config  # the config in force, handed in by the daemon between files
        self.watcher = watcher
        self.waiting = 0  # files seen but not yet settled at the last scan
        self._parsed: dict[str, tuple[tuple, list[Example]]] = {}  # stamped name -> (signature, examples)

    def parsed(self, job: Job) -> list[Example] | None:
        """The examples of a claimed file as read at admission (None if not kept, or the file changed since)."""
        kept = self._parsed.pop(job.name, None)
        try:
            return kept[1] if kept and _signature(job.path) == kept[0] else None
        except FileNotFoundError:
            return None

    def _keep(self, name: str, signature: tuple, examples: list[Example]) -> None:
        if sum(s[1] for s, _ in self._parsed.values()) + signature[1] <= PARSED_BYTES:
            self._parsed[name] = (signature, examples)

    def _complete(self, path: Path, now: float) -> bool:
        if self.watcher is not None and self.watcher.renamed_in(path):
            return True
        return now - os.lstat(path).st_mtime >= self.config.daemon.settle_seconds

    def _candidates(self) -> list[tuple[Path, str]]:
        """Unadmitted entries, oldest first: files found in one scan (say, at start-up) are
        stamped in the order they were written, the best evidence of arrival there is."""
        q = self.queue
        found = [(q.inbox / n, "normal") for n in os.listdir(q.inbox)
                 if q.inbox / n not in (q.practice_inbox, q.feedback_inbox)]  # each its own intake
        if q.practice_inbox.is_symlink():  # refused like any link, and never followed: what it points to is not ours
            found.append((q.practice_inbox, "normal"))
        else:
            q.practice_inbox.mkdir(exist_ok=True)  # again, after a link in its place was refused
            found += [(q.practice_inbox / n, PRACTICE) for n in os.listdir(q.practice_inbox)]
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
                signature = _signature(path)
                caps = {"max_line_bytes": self.config.training.max_line_bytes,
                        "max_file_bytes": self.config.training.max_file_bytes}
                examples = None
                if priority == PRACTICE:
                    read_problems(path, **caps)  # checked whole now, read again per round
                else:
                    examples = read_examples(path, **caps)
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
            if examples is not None:
                self._keep(target.name, signature, examples)
            admitted += 1
            self.events.emit("queued", f"{path.name} -> queue/{priority}/{target.name}", file=path.name,
                             priority=priority)
        self.waiting = waiting
        return admitted
