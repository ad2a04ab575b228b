"""Adapter versions on disk: data/adapters/v0001, v0002, ... and a `current` link.

A version is built in a `.staging-*` folder, fsynced, then renamed into place,
so a folder named vNNNN is always complete. Which version is current is decided
by data/state.json; the `current` symlink is a convenience kept in step with it.
"""
from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path

from .fsutil import durable_replace, fsync_dir, fsync_tree, remove_tree

VERSION = re.compile(r"^v(\d{4,})$")


class AdapterStore:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, version: str) -> Path:
        if not VERSION.match(version):
            raise ValueError(f"not an adapter version: {version!r}")
        return self.folder / version

    def versions(self) -> list[str]:
        return sorted((p.name for p in self.folder.iterdir() if VERSION.match(p.name)), key=lambda v: int(v[1:]))

    def next_version(self) -> str:
        existing = self.versions()
        return f"v{int(existing[-1][1:]) + 1 if existing else 1:04d}"

    def staging(self, version: str) -> Path:
        path = self.folder / f".staging-{version}-{os.getpid()}"
        remove_tree(path)
        path.mkdir()
        return path

    def promote(self, staging: Path, version: str) -> Path:
        fsync_tree(staging)
        target = self.path(version)
        durable_replace(staging, target)
        return target

    def point_current(self, version: str) -> None:
        link = self.folder / "current"
        tmp = self.folder / f".current-{os.getpid()}"
        tmp.unlink(missing_ok=True)
        os.symlink(version, tmp)
        if link.is_dir() and not link.is_symlink():  # a root copied with its links followed (`cp -r`): the
            remove_tree(link)                         # folder is a copy of a version, which state.json names
        os.replace(tmp, link)
        fsync_dir(self.folder)

    def recover(self, committed: list[str], current: str | None, *, state_lost: bool = False) -> list[str]:
        """Remove staging leftovers and versions no state commit names; return what was removed. When the state
        was lost (`state_lost`: its file missing or unreadable), versions it does not name are the user's trained
        work, not a save cut short: they are moved aside into `.lost/`, never deleted."""
        removed, aside = [], None
        for p in self.folder.iterdir():
            uncommitted = VERSION.match(p.name) and p.name not in committed
            if uncommitted and state_lost:
                if aside is None:  # one new folder per recovery: an earlier one may hold the same names
                    (self.folder / ".lost").mkdir(exist_ok=True)
                    aside = Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=self.folder / ".lost"))
                durable_replace(p, aside / p.name)
                removed.append(f"{p.name} (moved to {aside / p.name})")
            elif p.name.startswith((".staging-", ".current-")) or uncommitted:
                remove_tree(p) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
                removed.append(p.name)
        if current:
            self.point_current(current)
        return removed

    def prune(self, committed: list[str], keep: int, protect: set[str]) -> list[str]:
        """Delete the oldest versions beyond `keep`, never one in `protect`; return those deleted."""
        doomed = [v for v in committed[:-keep] if v not in protect] if len(committed) > keep else []
        for v in doomed:
            remove_tree(self.path(v))
        return doomed
