"""Turns evaluation results into self-correction training files.

Wrong answers become triples in a buffer. At each `generation_interval`
boundary of the global step, if the buffer holds `min_examples`, the buffer is
written as data/self_correction/self_correction_step{STEP}_{YYYYmmdd_HHMMSS}.jsonl
(plus a .json metadata file), and with `auto_queue` a copy goes to the outbox (the daemon's queue).

The buffer and the statistics live in data/self_correction/buffer.json, written
atomically after every change, so a crash loses no generated example. A file
being written is recorded there first ("pending"), so a crash in the middle is
finished at the next start rather than repeated or lost.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from core.config import Config
from core.faults import fault_point
from core.fsutil import atomic_write_bytes, atomic_write_json
from core.outbox import Outbox
from evaluation.evaluate import EvalResult

from .correction_examples import CONFIRMATION, RECORD_KINDS, records_for_answer

FILE_PREFIX = "self_correction_step"


def _empty_stats() -> dict:
    return {"total_evals": 0, "correct_first_try": 0, "needed_correction": 0, "files_generated": 0,
            "examples_generated": 0, "skipped_at_cap": 0}


class SelfCorrectionGenerator:
    def __init__(self, *, root: Path, outbox: Outbox, config: Config, events=None):
        """`config` is the config in force; its owner (the live monitor) replaces it when the config changes."""
        self.root = Path(root)
        self.outbox = outbox
        self.config = config
        self.events = events
        self.dir = self.root / "data" / "self_correction"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state_path = self.dir / "buffer.json"
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
        added = 0
        for r in results:
            self.stats["total_evals"] += 1
            self.stats["correct_first_try" if r.matched else "needed_correction"] += 1
            records = records_for_answer(question=r.question, golden=r.golden, predicted=r.predicted,
                                         matched=r.matched, codes=r.codes, step=step, source=r.source,
                                         templates=self.config.self_correction.templates,
                                         experimental=self.config.experimental)
            self.buffer.extend(records)
            added += len(records)
        self._save()
        return added

    def add_records(self, records: list[dict]) -> None:
        """Records made elsewhere (training examples of the live monitor's traces) join the buffer."""
        self.buffer.extend(records)
        self._save()

    # -- output ------------------------------------------------------------------------------

    def maybe_generate(self, *, step: int) -> Path | None:
        """Write a file if `step` crossed a generation_interval boundary and the buffer holds min_examples."""
        settings = self.config.self_correction
        if self.pending:  # an earlier write failed (disk full): finish it before starting another
            self._finish_pending()
        interval = settings.generation_interval
        crossed = step // interval > self.last_step // interval
        self.last_step = max(self.last_step, step)
        if not crossed or len(self.buffer) < settings.min_examples:
            self._save()
            return None
        if settings.auto_queue and self.outbox.pending_count() >= settings.max_pending_files:
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
        if p["queue"] and not self.outbox.contains(name):
            fault_point("generator.before_queue")
            queued = self.outbox.add(name, data, p["queue"])
            self._emit("self-correction", f"   → Queued for training: {queued}", path=str(queued))
        self.pending = None
        self._save()
        return path
