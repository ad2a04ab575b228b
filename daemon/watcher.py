"""watchdog events as hints: they wake the loop early and mark renamed-in files as complete.

Nothing here moves a file. Events can be dropped (inotify overflow) and files
present before start produce none, so the periodic scan stays the truth.
"""
from __future__ import annotations

import threading
from pathlib import Path

from watchdog.events import FileSystemEventHandler
from watchdog.observers import Observer

from .queue import STAMPED


class Watcher(FileSystemEventHandler):
    def __init__(self, folders: list[Path]):
        self.folders = [Path(f).resolve() for f in folders]
        self.wake = threading.Event()
        self._renamed_in: set[Path] = set()
        self._lock = threading.Lock()
        self.observer: Observer | None = None

    def start(self) -> None:
        self.observer = Observer()
        for folder in self.folders:
            self.observer.schedule(self, str(folder), recursive=False)
        self.observer.daemon = True
        self.observer.start()

    def stop(self) -> None:
        if self.observer is not None:
            self.observer.stop()
            self.observer.join(timeout=5)

    def on_any_event(self, event) -> None:
        # Our own transitions are renames too; only unstamped names are files still to admit.
        if event.event_type == "moved" and not event.is_directory and not STAMPED.match(Path(event.dest_path).name):
            with self._lock:
                self._renamed_in.add(Path(event.dest_path).resolve())
        self.wake.set()

    def renamed_in(self, path: Path) -> bool:
        """True if `path` arrived by rename: the documented safe way to drop a complete file."""
        with self._lock:
            return Path(path).resolve() in self._renamed_in

    def forget(self, path: Path) -> None:
        with self._lock:
            self._renamed_in.discard(Path(path).resolve())
