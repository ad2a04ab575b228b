"""Where generated training files go: an interface, so that the layers that write them never import the queue.

The daemon's queue implements it (`Queue.outbox(origin)`): a file added through an
outbox is marked with its origin in its queued name, so the daemon knows a generated
file by where it came from, never by reading its records.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol


class Outbox(Protocol):
    def add(self, name: str, data: bytes, priority: str) -> Path:
        """Queue a new file, whole (it appears under its final name only once complete)."""

    def pending_count(self) -> int:
        """Files of this outbox's origin waiting in the queue or in training."""

    def contains(self, name: str) -> bool:
        """Whether a file of this name was already queued (waiting, in training, or done)."""
