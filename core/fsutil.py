"""Durable file operations: a file or folder is visible under its final name only once complete.

The pattern is Maildir's: write under a temporary name, fsync, rename, fsync the
folder. A failed fsync raises; it is never retried into "success".
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    """fsync every file and folder below `path` (used before a staged folder is renamed)."""
    for dirpath, _, filenames in os.walk(path):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))


def durable_replace(src: Path, dst: Path) -> None:
    """Rename `src` to `dst` atomically and make the rename survive a power cut."""
    os.replace(src, dst)
    fsync_dir(Path(dst).parent)
    if Path(src).parent != Path(dst).parent:
        fsync_dir(Path(src).parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """The file appears whole under its name, or not at all; its folder is made if it is missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        durable_replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def read_appended(path: Path) -> list[dict]:
    """The JSON lines of a file that results are appended to (and fsynced) as they come. A line cut by a kill
    mid-write is cut off the file, so the next result appended starts on a line of its own; that one result is
    made again."""
    if not path.exists():
        return []
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        os.truncate(path, data.rfind(b"\n") + 1)
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def sha256_file(path: Path) -> str:
    """A file's sha256, read in blocks (a file of any size in constant memory)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
