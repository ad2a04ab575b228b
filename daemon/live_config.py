"""config.json while the daemon runs: reloaded when it changes, applied only if valid.

Editors replace the file by rename, so a change is noticed by (inode, size,
mtime), not by watching writes. An invalid edit is logged with every problem
and the last good config stays in force.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

from core.config import Config, config_diff, load_config
from core.errors import ConfigError


class LiveConfig:
    def __init__(self, path: Path, config: Config, events):
        self.path = Path(path)
        self.current = config
        self.events = events
        self._seen = self._signature()
        self._lock = threading.Lock()

    def _signature(self):
        try:
            st = os.stat(self.path)
            return (st.st_ino, st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            return None

    def poll(self) -> list[str]:
        """Reload if the file changed; returns the changed keys ([] when nothing valid changed)."""
        with self._lock:
            signature = self._signature()
            if signature == self._seen:
                return []
            self._seen = signature
            if signature is None:
                self.events.emit("config", f"{self.path} was removed; keeping the last good config")
                return []
            try:
                new = load_config(self.path)
            except ConfigError as e:
                self.events.emit("config", f"invalid edit, keeping the last good config: {e}", problems=e.problems)
                return []
            changes = config_diff(self.current, new)
            if changes:
                self.current = new
                self.events.emit("config", "config changed: " + "; ".join(changes), changes=changes)
            if any(c.startswith(("model.", "lora.")) for c in changes):
                self.events.emit("config", "model.* and lora.* changes take effect after a restart of the daemon")
            return changes

    def latest(self) -> Config:
        """The config in force, after picking up any edit (for settings read live, mid-file)."""
        self.poll()
        return self.current
