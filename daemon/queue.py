"""The queue: each state is a folder, each transition one durable rename.

    inbox/ --admit--> queue/<priority>/ --claim--> queue/processing/ --finish--> queue/done/
                                                                    \\--fail----> queue/failed/
    (at start-up, processing/ --recover--> the head of its queue)

    inbox/practice/ --admit--> queue/practice/ --(its rounds trained, see daemon/practice.py)--> queue/done/

Names in the queue folders carry an arrival stamp (`20261123T101500.123456789--name.jsonl`),
so sorting by name is first-in first-out, and a file put back from processing/
sorts ahead of everything that arrived after it. A file we generated carries its
origin in the stamp (`20261123T101500.123456789.selfcorrect--name.jsonl`): that is how
the daemon knows it, wherever it moves. A file is only ever visible under a final
name once complete: new files are written as dotfiles and renamed.
"""
from __future__ import annotations

import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from core.faults import fault_point
from core.fsutil import atomic_write_bytes, atomic_write_json, durable_replace

PRIORITIES = ("high", "normal", "low")
PRACTICE = "practice"  # the folder of practice files, in inbox/ and in queue/
STAMPED = re.compile(r"^\d{8}T\d{6}\.\d{9}(?:\.(?P<origin>[a-z]+))?--")
IGNORED_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".swp")
MAX_NAME_BYTES = 150


@dataclass(frozen=True)
class Job:
    path: Path  # in queue/processing/
    priority: str
    name: str  # the stamped name, unique across the queue

    @property
    def original_name(self) -> str:
        return STAMPED.sub("", self.name)

    @property
    def origin(self) -> str | None:
        """Which outbox generated this file; None for a file a user dropped."""
        return STAMPED.match(self.name)["origin"]


def safe_name(name: str) -> str:
    """A file name confined to one folder: no separators, no control characters, no bytes that are not UTF-8 (the
    surrogates os.listdir gives them), bounded length."""
    cleaned = "".join("_" if (c in "/\\" or ord(c) < 32 or c == "\x7f" or "\udc80" <= c <= "\udcff") else c
                      for c in name).strip(" .") or "unnamed"
    raw = cleaned.encode("utf-8")
    if len(raw) > MAX_NAME_BYTES:
        stem, dot, ext = cleaned.rpartition(".")
        ext = (dot + ext) if dot and len(ext) <= 10 else ""
        cleaned = raw[: MAX_NAME_BYTES - len(ext.encode())].decode("utf-8", "ignore") + ext
    return cleaned


def ignored(name: str) -> bool:
    """Names the daemon never touches: hidden files (in-progress writes) and partial downloads."""
    return name.startswith(".") or name.endswith(IGNORED_SUFFIXES)


def refusal(path: Path) -> str | None:
    """Why an entry can never be trained (None: a regular .jsonl file). lstat only: never follows or opens it."""
    mode = os.lstat(path).st_mode
    if stat.S_ISLNK(mode):
        return "symbolic links are not followed; copy the file itself into the folder"
    if stat.S_ISDIR(mode):
        return "folders are not read; drop the .jsonl files themselves"
    if not stat.S_ISREG(mode):
        return "not a regular file (a FIFO, socket or device); drop a finished .jsonl file"
    if not path.name.endswith(".jsonl"):
        return "only .jsonl files are trained; rename it if it is JSON Lines"
    return None


class Queue:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.inbox = self.root / "inbox"
        self.base = self.root / "queue"
        self.processing = self.base / "processing"
        self.done_dir = self.base / "done"
        self.failed_dir = self.base / "failed"
        self.practice_inbox = self.inbox / PRACTICE
        self.practice_dir = self.base / PRACTICE
        self.feedback_inbox = self.inbox / "feedback"  # verdicts on served answers (daemon/feedback.py)
        self._last_stamp = 0
        for d in (self.inbox, *(self.base / p for p in PRIORITIES), self.processing, self.done_dir, self.failed_dir,
                  self.practice_inbox, self.practice_dir, self.feedback_inbox):
            d.mkdir(parents=True, exist_ok=True)

    def folder(self, priority: str) -> Path:
        if priority not in PRIORITIES:
            raise ValueError(f"priority must be one of {PRIORITIES}, got {priority!r}")
        return self.base / priority

    def _stamp(self) -> str:
        ns = max(time.time_ns(), self._last_stamp + 1)  # strictly increasing, so FIFO holds within a process
        self._last_stamp = ns
        return time.strftime("%Y%m%dT%H%M%S", time.gmtime(ns // 1_000_000_000)) + f".{ns % 1_000_000_000:09d}"

    def stamped(self, name: str, origin: str | None = None) -> str:
        return f"{self._stamp()}{'.' + origin if origin else ''}--{safe_name(STAMPED.sub('', name))}"

    def outbox(self, origin: str) -> "QueueOutbox":
        """Where a generator puts its files (see core.outbox); `origin` marks them, lower-case letters."""
        return QueueOutbox(self, origin)

    # -- transitions ----------------------------------------------------------------------------

    def admit(self, path: Path, priority: str = "normal") -> Path:
        """inbox/ (or an unstamped name in queue/<p>/) -> queue/<priority>/ under a stamped name; a practice
        file (priority PRACTICE) -> queue/practice/."""
        target = (self.practice_dir if priority == PRACTICE else self.folder(priority)) / self.stamped(path.name)
        fault_point("queue.admit")
        durable_replace(path, target)
        return target

    def add(self, name: str, data: bytes, priority: str, *, origin: str) -> Path:
        """A new file (generated by us) appears whole in queue/<priority>/: written as a hidden file, then renamed."""
        target = self.folder(priority) / self.stamped(name, origin)
        atomic_write_bytes(target, data)
        return target

    def pending(self, up_to: str = PRIORITIES[-1]) -> list[tuple[str, Path]]:
        """Queued files in training order: priority, then arrival (`up_to`: only this priority and above)."""
        out = []
        for p in PRIORITIES[:PRIORITIES.index(up_to) + 1]:
            names = sorted(n for n in os.listdir(self.folder(p)) if STAMPED.match(n) and not ignored(n))
            out.extend((p, self.folder(p) / n) for n in names)
        return out

    def practice_files(self) -> list[Path]:
        """Practice files in work, in arrival order (an entry that is no regular file goes to failed/)."""
        out = []
        for path in (self.practice_dir / n for n in sorted(os.listdir(self.practice_dir)) if STAMPED.match(n)):
            reason = refusal(path)
            if reason:
                self.fail(path, {"file": STAMPED.sub("", path.name), "reason": reason, "problems": []})
            else:
                out.append(path)
        return out

    def claim(self, up_to: str = PRIORITIES[-1]) -> Job | None:
        for priority, path in self.pending(up_to):
            try:
                reason = refusal(path)  # a name that looks queued is still checked: a FIFO would block the read
            except FileNotFoundError:
                continue
            if reason:
                self.fail(path, {"file": STAMPED.sub("", path.name), "reason": reason, "problems": []})
                continue
            target = self.processing / f"{priority}~{path.name}"
            fault_point("queue.claim")
            try:
                durable_replace(path, target)
            except FileNotFoundError:  # removed by the user since the listing
                continue
            return Job(target, priority, path.name)
        return None

    def requeue(self, job: Job) -> Path:
        """processing/ -> the head of its queue (its stamp is older than anything queued since)."""
        target = self.folder(job.priority) / job.name
        fault_point("queue.requeue")
        durable_replace(job.path, target)
        return target

    def finish(self, job: Job, manifest: dict) -> Path:
        atomic_write_json(self.done_dir / f"{job.name}.manifest.json", manifest)
        target = self.done_dir / job.name
        fault_point("queue.finish")
        durable_replace(job.path, target)
        return target

    def fail(self, path: Path, report: dict, *, name: str | None = None) -> Path:
        """Any entry -> failed/, with NAME.error.json beside it saying why."""
        name = name or (path.name.split("~", 1)[1] if path.parent == self.processing else path.name)
        if not STAMPED.match(name):
            name = self.stamped(name)
        atomic_write_json(self.failed_dir / f"{name}.error.json", report)
        fault_point("queue.fail")
        durable_replace(path, self.failed_dir / name)
        return self.failed_dir / name

    def where(self, name: str, *, since: str = "") -> str | None:
        """Where a file queued under `name` is: "waiting" (queued or in training), "failed" (if it failed after
        the stamp `since`), or None (done, or never queued)."""
        suffix = f"--{name}"
        for folder in (*(self.folder(p) for p in PRIORITIES), self.processing):
            if any(n.endswith(suffix) for n in os.listdir(folder) if not ignored(n)):
                return "waiting"
        if any(n.endswith(suffix) and n > since for n in os.listdir(self.failed_dir) if STAMPED.match(n)):
            return "failed"
        return None

    def done_user_files(self) -> list[tuple[str, Path]]:
        """The files users dropped that were trained (done/, not the ones we generated), oldest first, each with
        its original name."""
        return [(STAMPED.sub("", n), self.done_dir / n) for n in sorted(os.listdir(self.done_dir))
                if n.endswith(".jsonl") and (m := STAMPED.match(n)) and m["origin"] is None]

    def recover(self) -> list[Job]:
        """At start-up, every file left in processing/ goes back to the head of its queue."""
        jobs = []
        for name in sorted(os.listdir(self.processing)):
            if ignored(name) or "~" not in name:
                continue
            priority, stamped = name.split("~", 1)
            if priority not in PRIORITIES:
                priority = "normal"
            job = Job(self.processing / name, priority, stamped)
            self.requeue(job)
            jobs.append(job)
        return jobs



class QueueOutbox:
    """The queue as a generator sees it (core.outbox.Outbox): files of one origin."""

    def __init__(self, queue: Queue, origin: str):
        if not re.fullmatch(r"[a-z]+", origin):
            raise ValueError(f"an outbox origin is lower-case letters, got {origin!r}")
        self.queue, self.origin = queue, origin

    def _names(self, *, done: bool) -> list[str]:
        q = self.queue
        folders = [q.folder(p) for p in PRIORITIES] + [q.processing] + ([q.done_dir] if done else [])
        return [n for d in folders for n in os.listdir(d) if not ignored(n)]

    def add(self, name: str, data: bytes, priority: str) -> Path:
        return self.queue.add(name, data, priority, origin=self.origin)

    def pending_count(self) -> int:
        ours = (m for n in self._names(done=False) if (m := STAMPED.match(n.split("~", 1)[-1])))
        return sum(1 for m in ours if m["origin"] == self.origin)

    def contains(self, name: str) -> bool:
        return any(n.endswith(f"--{name}") for n in self._names(done=True))
