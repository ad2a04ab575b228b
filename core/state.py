"""data/state.json: where training stands. Written atomically; it is the commit point.

A file counts as trained once its sha256 is in `files_trained` here, and an
adapter version counts as current (served) once `current_adapter` names it. `head` is the
version training goes on from: the newest trained one, promoted or not (training.promotion.on_reject
"continue"), or the current one ("rollback", or after `selfcorrect rollback`).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import ProjectError
from .fsutil import atomic_write_json


@dataclass
class TrainingState:
    global_step: int = 0
    current_adapter: str | None = None
    versions: list[str] = field(default_factory=list)  # committed adapter versions, oldest first
    # {name, sha256, examples, tokens, supervised_tokens, steps, adapter, seconds, promoted}
    files_trained: list[dict] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # versions the promotion gate kept but did not make current
    head: str | None = None  # the version the next file trains from (None: a fresh adapter)
    refused_in_a_row: int = 0  # versions refused since the last promotion or rollback

    @classmethod
    def load(cls, path: Path) -> "TrainingState":
        if not Path(path).exists():
            return cls()
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            if isinstance(data, dict):
                data.setdefault("head", data.get("current_adapter"))  # written before the head existed
            return cls(**data)
        except (ValueError, TypeError) as e:
            raise ProjectError(f"{path}: unreadable training state ({e}); restore it from a backup or remove it") from None

    def save(self, path: Path) -> None:
        atomic_write_json(path, asdict(self))

    def trained(self, sha256: str) -> dict | None:
        return next((f for f in self.files_trained if f["sha256"] == sha256), None)
