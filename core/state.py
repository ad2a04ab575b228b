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
from .fsutil import atomic_write_json, atomic_write_text


def previous(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + ".prev")


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
    def read(cls, path: Path) -> "TrainingState":
        """The state in one file, or ValueError/TypeError/OSError saying why it cannot be read."""
        return cls.parse(Path(path).read_text(encoding="utf-8"))

    @classmethod
    def parse(cls, text: str) -> "TrainingState":
        data = json.loads(text)
        if isinstance(data, dict):
            data.setdefault("head", data.get("current_adapter"))  # written before the head existed
        return cls(**data)

    @classmethod
    def recover(cls, path: Path) -> tuple["TrainingState", str | None]:
        """(the state, None), or when state.json is missing or unreadable, (its previous commit, kept beside it
        as state.json.prev, or a fresh state where there is none, and what happened, for the log)."""
        path, prev = Path(path), previous(path)
        try:
            return cls.read(path), None
        except FileNotFoundError:
            why = "is missing"
        except (ValueError, TypeError, OSError) as e:
            why = f"cannot be read ({e})"
        if not prev.exists():
            return cls(), None if why == "is missing" else f"{path} {why} and no previous commit is kept beside it"
        try:
            return cls.read(prev), f"{path} {why}: training goes on from its previous commit, {prev.name}"
        except (ValueError, TypeError, OSError) as e:
            raise ProjectError(f"{path} {why}, and its previous commit {prev.name} cannot be read either ({e}): restore "
                               f"{path.name} from a backup. Keep data/adapters: each version there is a trained "
                               "adapter, and a state written afresh would not name it") from None

    @classmethod
    def load(cls, path: Path) -> "TrainingState":
        """For readers (status, the server, --eval): the state as the next start of the daemon will see it."""
        return cls.recover(path)[0]

    def save(self, path: Path) -> None:
        """The commit point. The commit before it is kept beside it (state.json.prev) for recovery."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
            type(self).parse(text)  # only a readable commit is kept: never a damaged one over a good one
            atomic_write_text(previous(path), text)
        except (ValueError, TypeError, OSError):
            pass
        atomic_write_json(path, asdict(self))

    def trained(self, sha256: str) -> dict | None:
        return next((f for f in self.files_trained if f["sha256"] == sha256), None)
