"""The validation pool: questions the model is evaluated on, persisted under data/validation/.

It is filled from `validation.files` and from a deterministic hold-out of each
incoming training file (`validation.holdout_fraction`), so evaluation works with
no set-up. Generated self-correction files add nothing. Items are taken in a
fixed rotation (a persisted cursor), so every item is seen before any repeats.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from selfcorrect.correction_examples import RECORD_KINDS
from selfcorrect.qa import QAItem, read_qa
from training.data import Example
from training.fsutil import atomic_write_json, atomic_write_text


def is_generated(examples: list[Example]) -> bool:
    """A self-correction file written by our generator: every record carries one of its kinds."""
    return bool(examples) and all(e.meta.get("kind") in RECORD_KINDS for e in examples)


def split_holdout(examples: list[Example], *, fraction: float, seed: str,
                  limit: int | None = None) -> tuple[list[Example], list[Example]]:
    """(rest, held out): a fixed share of the QA examples (at most `limit`), chosen by the file's hash,
    so a retry picks the same."""
    if fraction <= 0 or is_generated(examples):
        return examples, []
    qa = [k for k, e in enumerate(examples) if e.messages and e.messages[-1]["role"] == "assistant"
          and len(e.messages) >= 2 and e.messages[-2]["role"] == "user"]
    n = min(int(len(qa) * fraction), len(qa) if limit is None else limit)
    chosen = set(random.Random(seed).sample(qa, n)) if n else set()
    return [e for k, e in enumerate(examples) if k not in chosen], [e for k, e in enumerate(examples) if k in chosen]


def qa_items(examples: list[Example], *, file: str, sha256: str) -> list[QAItem]:
    """The QA examples (a user turn, then the answer) of a prepared file as items; ids are hash:line."""
    items = []
    for e in examples:
        last = len(e.messages or []) - 1
        if last >= 1 and e.messages[last]["role"] == "assistant" and e.messages[last - 1]["role"] == "user":
            items.append(QAItem(f"{sha256[:12]}:{e.line}", e.messages[:last], e.messages[last]["content"], file, e.line))
    return items


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
