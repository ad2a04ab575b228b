"""One daemon (or one-shot run) per root: an exclusive flock on data/daemon.lock holding the pid."""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

from core.errors import LockError


class RootLock:
    def __init__(self, root: Path):
        self.path = Path(root) / "data" / "daemon.lock"
        self.fd: int | None = None

    def acquire(self) -> "RootLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            pid = holder_pid(self.path.parents[1])
            raise LockError(f"another daemon (pid {pid}) is already working on {self.path.parents[1]}; "
                            f"stop it first (kill -TERM {pid}) or use another --root") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.fsync(fd)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock; the file stays (its pid is then stale)
            self.fd = None


def holder_pid(root: Path) -> int | None:
    """The pid of the live process holding the root, read without taking the lock (for --status)."""
    try:
        pid = int((Path(root) / "data" / "daemon.lock").read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None
