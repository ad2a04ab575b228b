"""Turns evaluation results into self-correction training files.

Wrong answers become triples in a buffer. At each `generation_interval`
boundary of the global step, if the buffer holds `min_examples`, the buffer is
written as data/self_correction/self_correction_step{STEP}_{YYYYmmdd_HHMMSS}.jsonl
(plus a .json metadata file), and with `auto_queue` a copy is put into the queue.

The buffer and the statistics live in data/self_correction/buffer.json, written
atomically after every change, so a crash loses no generated example. A file
being written is recorded there first ("pending"), so a crash in the middle is
finished at the next start rather than repeated or lost.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from daemon.queue import PRIORITIES, Queue, ignored
from training.config import SelfCorrectionSection
from training.faults import fault_point
from training.fsutil import atomic_write_bytes, atomic_write_json

from .correction_examples import CONFIRMATION, RECORD_KINDS, records_for_answer

FILE_PREFIX = "self_correction_step"


@dataclass
class EvalResult:
    """One validation question as answered at an evaluation."""

    question: str
    golden: str
    predicted: str
    matched: bool
    codes: list[str] = field(default_factory=list)
    source: dict = field(default_factory=dict)  # {"id", "file"}


def _empty_stats() -> dict:
    return {"total_evals": 0, "correct_first_try": 0, "needed_correction": 0, "files_generated": 0,
            "examples_generated": 0, "skipped_at_cap": 0}


class SelfCorrectionGenerator:
    def __init__(self, *, root: Path, settings, events=None):
        """`settings` is a callable returning the live SelfCorrectionSection (read at each use)."""
        self.root = Path(root)
        self.settings = settings
        self.events = events
        self.dir = self.root / "data" / "self_correction"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state_path = self.dir / "buffer.json"
        self.queue = Queue(self.root)
        state = json.loads(self.state_path.read_text()) if self.state_path.exists() else {}
        self.buffer: list[dict] = state.get("buffer", [])
        self.stats: dict = {**_empty_stats(), **state.get("stats", {})}
        self.last_step: int = state.get("last_step", 0)
        self.pending: dict | None = state.get("pending")
        if self.pending:
            self._finish_pending()

    def _save(self) -> None:
        atomic_write_json(self.state_path, {"buffer": self.buffer, "stats": self.stats,
                                            "last_step": self.last_step, "pending": self.pending})

    def _emit(self, kind: str, message: str, **fields) -> None:
        if self.events:
            self.events.emit(kind, message, **fields)

    # -- intake ------------------------------------------------------------------------------

    def process_results(self, results: list[EvalResult], *, step: int) -> int:
        """Add the triples of the wrong answers (and confirmations, when asked) to the buffer;
        returns how many records were added."""
        settings: SelfCorrectionSection = self.settings()
        added = 0
        for r in results:
            self.stats["total_evals"] += 1
            self.stats["correct_first_try" if r.matched else "needed_correction"] += 1
            records = records_for_answer(question=r.question, golden=r.golden, predicted=r.predicted,
                                         matched=r.matched, codes=r.codes, step=step, source=r.source,
                                         settings=settings)
            self.buffer.extend(records)
            added += len(records)
        self._save()
        return added

    # -- output ------------------------------------------------------------------------------

    def pending_generated_files(self) -> int:
        """Generated files waiting in the queue (or in training)."""
        folders = [self.queue.folder(p) for p in PRIORITIES] + [self.queue.processing]
        return sum(1 for d in folders for n in os.listdir(d) if FILE_PREFIX in n and not ignored(n))

    def maybe_generate(self, *, step: int) -> Path | None:
        """Write a file if `step` crossed a generation_interval boundary and the buffer holds min_examples."""
        settings: SelfCorrectionSection = self.settings()
        if self.pending:  # an earlier write failed (disk full): finish it before starting another
            self._finish_pending()
        interval = settings.generation_interval
        crossed = step // interval > self.last_step // interval
        self.last_step = max(self.last_step, step)
        if not crossed or len(self.buffer) < settings.min_examples:
            self._save()
            return None
        if settings.auto_queue and self.pending_generated_files() >= settings.max_pending_files:
            self.stats["skipped_at_cap"] += 1
            self._save()
            self._emit("self-correction", f"Self-Correction: {settings.max_pending_files} generated files already "
                       f"waiting (self_correction.max_pending_files); keeping {len(self.buffer)} examples buffered")
            return None
        stamp = time.strftime("%Y%m%d_%H%M%S")
        self.stats["files_generated"] += 1
        self.stats["examples_generated"] += len(self.buffer)
        self.pending = {"name": f"{FILE_PREFIX}{step}_{stamp}.jsonl", "step": step, "timestamp": stamp,
                        "records": self.buffer, "queue": settings.queue if settings.auto_queue else None,
                        "stats": dict(self.stats)}
        self.buffer = []
        self._save()  # from here a crash finishes this file at the next start, not repeats or loses it
        fault_point("generator.after_pending")
        return self._finish_pending()

    def _already_queued(self, name: str) -> bool:
        folders = [self.queue.folder(p) for p in PRIORITIES] + [self.queue.processing, self.queue.done_dir]
        return any(n.endswith(f"--{name}") for d in folders for n in os.listdir(d))

    def _finish_pending(self) -> Path:
        """Write (or rewrite, identically) the pending file and its metadata, then queue it once."""
        p = self.pending
        records, name = p["records"], p["name"]
        path = self.dir / name
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
        counts = {k: sum(r["kind"] == k for r in records) for k in RECORD_KINDS}
        meta = {"step": p["step"], "timestamp": p["timestamp"], "num_examples": len(records),
                "breakdown": {"initial_attempts": counts["initial_attempt"], "self_evaluations": counts["self_evaluation"],
                              "corrections": counts["correction"], "confirmations": counts[CONFIRMATION],
                              "standard_qa": 0},
                "stats": p["stats"]}
        atomic_write_bytes(path, data)
        fault_point("generator.before_metadata")
        atomic_write_json(path.with_suffix(".json"), meta)
        self._emit("self-correction", f"🔄 Self-Correction: Generated {len(records)} examples → {path}",
                   path=str(path), examples=len(records), step=p["step"])
        if p["queue"] and not self._already_queued(name):
            fault_point("generator.before_queue")
            queued = self.queue.add(name, data, p["queue"])
            self._emit("self-correction", f"   → Queued for training: {queued}", path=str(queued))
        self.pending = None
        self._save()
        return path
