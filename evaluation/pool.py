"""The validation pool: questions the model is evaluated on, persisted under data/validation/.

It is filled from `validation.files` and from a deterministic hold-out of each
incoming training file (`validation.holdout_fraction`), so evaluation works with
no set-up. Generated files (self-correction) add nothing. Items are taken in a
fixed rotation (a persisted cursor), so every item is seen before any repeats.
"""
from __future__ import annotations

import json
from pathlib import Path

from core.data import Example
from core.fsutil import atomic_write_json, atomic_write_text
from core.qa import QAItem, qa_items, read_qa


class ValidationPool:
    """QA items persisted under data/<folder>/ (the promotion gate keeps its own set the same way)."""

    def __init__(self, root: Path, folder: str = "validation"):
        self.dir = Path(root) / "data" / folder
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "pool.jsonl"
        self.cursor_path = self.dir / "cursor.json"
        self.items: list[QAItem] = []
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                d = json.loads(line)
                self.items.append(QAItem(d["id"], d["conversation"], d["golden"], d["file"], d["line"]))
        self.cursor = json.loads(self.cursor_path.read_text())["cursor"] if self.cursor_path.exists() else 0

    def _save(self) -> None:
        atomic_write_text(self.path, "".join(json.dumps(vars(i), ensure_ascii=False) + "\n" for i in self.items))

    def add(self, items: list[QAItem]) -> int:
        known = {i.id for i in self.items}
        new = [i for i in items if i.id not in known]
        if new:
            self.items.extend(new)
            self._save()
        return len(new)

    def add_files(self, paths: list[Path]) -> int:
        return sum(self.add(read_qa(p)) for p in paths)

    def add_heldout(self, examples: list[Example], *, file: str, sha256: str) -> int:
        return self.add(qa_items(examples, file=file, sha256=sha256))

    def next_batch(self, n: int) -> list[QAItem]:
        """The next n items in rotation (fewer if the pool is smaller)."""
        if not self.items:
            return []
        n = min(n, len(self.items))
        batch = [self.items[(self.cursor + k) % len(self.items)] for k in range(n)]
        self.cursor = (self.cursor + n) % len(self.items)
        atomic_write_json(self.cursor_path, {"cursor": self.cursor})
        return batch
