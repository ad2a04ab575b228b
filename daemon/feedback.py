"""From use back to training: verdicts on served answers become training files, between files, like the
self-correction generator's.

Verdicts come two ways, one format (core/feedback.py): the server's feedback log (served/feedback/, read up to a
cursor, whole lines only, never written here) and files dropped into inbox/feedback/ (checked whole: a bad line
fails the file, to queue/failed/ with every line named; a good file moves to data/feedback/taken/). Each verdict
becomes records:

  a correction   the three self-correction records with the user's text as the golden answer (the served
                 answer rides as "rejected", never a target; the error codes are computed against the
                 correction), `feedback.correction_repeats` times; and the question with its correction joins the
                 promotion gate's set and the validation pool, so a version that breaks a correction the served
                 version gets right is not promoted, and live inference keeps asking it;
  "good"         the served answer as the target;
  "bad" alone    listed as waiting for a correction (status, a `feedback` event); not trained (it says what
                 is wrong, not what is right).

Records gather in data/feedback/state.json with the cursor, saved atomically together, so each verdict is taken
exactly once across kills; a file is written as the generator writes one (recorded as pending first, then written
and queued under a name it can recognise), `feedback.min_examples` at a time or after `feedback.max_wait_seconds`.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from core.config import Config
from core.errors import DataError
from core.faults import fault_point
from core.feedback import FEEDBACK_STATE, SERVED_FEEDBACK, read_feedback_file
from core.fsutil import atomic_write_bytes, atomic_write_json, durable_replace, sha256_file
from core.outbox import Outbox
from core.qa import QAItem
from evaluation.error_codes import error_codes
from evaluation.pool import ValidationPool
from selfcorrect.correction_examples import build_triple

from .queue import Queue, ignored, refusal

ORIGIN = "feedback"  # the origin mark of the files this loop queues
FILE_PREFIX = "feedback_"


class FeedbackLoop:
    def __init__(self, root: Path, *, queue: Queue, outbox: Outbox, gate: ValidationPool, pool: ValidationPool,
                 events):
        self.root, self.queue, self.outbox, self.events = Path(root), queue, outbox, events
        self.gate, self.pool = gate, pool
        self.inbox = queue.feedback_inbox
        self.served = self.root / SERVED_FEEDBACK
        self.state_path = self.root / FEEDBACK_STATE
        self.taken_dir = self.state_path.parent / "taken"
        self.taken_dir.mkdir(parents=True, exist_ok=True)
        state = json.loads(self.state_path.read_text()) if self.state_path.exists() else {}
        self.cursor: dict[str, int] = state.get("cursor", {})  # served feedback file -> bytes taken
        self.taken: list[str] = state.get("taken", [])  # sha256 of the inbox files taken
        self.records: list[dict] = state.get("records", [])  # waiting for the next file
        self.since: float | None = state.get("since")  # when the oldest waiting record came
        self.waiting: list[dict] = state.get("waiting", [])  # "bad" verdicts with no correction
        self.pending: dict | None = state.get("pending")
        self.stats: dict = {"verdicts": 0, "corrections": 0, "good": 0, "bad": 0, "files": 0,
                            **state.get("stats", {})}
        if self.pending:
            self._finish_pending()

    def _save(self) -> None:
        atomic_write_json(self.state_path, {"cursor": self.cursor, "taken": self.taken, "records": self.records,
                                            "since": self.since, "waiting": self.waiting[-100:],
                                            "pending": self.pending, "stats": self.stats})

    # -- the step between files ---------------------------------------------------------------------------

    def step(self, config: Config, now: float | None = None) -> Path | None:
        """Take new verdicts, then write a training file when enough are waiting (or waited long enough)."""
        if not config.feedback.enabled:
            return None
        now = time.time() if now is None else now
        if self.pending:
            self._finish_pending()
        self._take_served(config)
        self._take_inbox(config, now)
        settings = config.feedback
        due = self.records and (len(self.records) >= settings.min_examples
                                or now - (self.since or now) >= settings.max_wait_seconds)
        if not due:
            return None
        stamp = time.strftime("%Y%m%d_%H%M%S", time.localtime(now))
        name = f"{FILE_PREFIX}{stamp}_{hashlib.sha256(json.dumps(self.records).encode()).hexdigest()[:8]}.jsonl"
        self.pending = {"name": name, "records": self.records, "queue": settings.queue}
        self.records, self.since = [], None
        self.stats["files"] += 1
        self._save()  # from here a kill finishes this file at the next start, never repeats or loses it
        fault_point("feedback.after_pending")
        return self._finish_pending()

    def _finish_pending(self) -> Path:
        p = self.pending
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in p["records"]).encode("utf-8")
        path = self.state_path.parent / p["name"]
        atomic_write_bytes(path, data)
        if not self.outbox.contains(p["name"]):
            queued = self.outbox.add(p["name"], data, p["queue"])
            self.events.emit("feedback", f"{len(p['records'])} records from feedback -> queue/{p['queue']}/"
                             f"{queued.name}", file=queued.name, examples=len(p["records"]))
        self.pending = None
        self._save()
        return path

    # -- intake ------------------------------------------------------------------------------------------

    def _take_served(self, config: Config) -> None:
        """Whole new lines of the server's feedback log, past the cursor (a line still being written waits)."""
        if not self.served.is_dir():
            return
        for path in sorted(self.served.glob("*.jsonl")):
            start = self.cursor.get(path.name, 0)
            if path.stat().st_size <= start:
                continue
            with open(path, "rb") as f:
                f.seek(start)
                chunk = f.read()
            whole = chunk[:chunk.rfind(b"\n") + 1]
            if not whole:
                continue
            for raw in whole.splitlines():
                try:
                    self._take(json.loads(raw), config)
                except Exception as e:  # one verdict fails alone: said, skipped, never the daemon
                    self.events.emit("warning", f"served/feedback/{path.name}: a line could not be read ({e}); "
                                     "skipped")
            self.cursor[path.name] = start + len(whole)
            self._save()
            fault_point("feedback.after_taken")
        known = {p.name for p in self.served.glob("*.jsonl")}
        self.cursor = {name: at for name, at in self.cursor.items() if name in known}  # pruned by the server

    def _take_inbox(self, config: Config, now: float) -> None:
        """Complete files of inbox/feedback/: all their lines, or none and the file to queue/failed/."""
        if self.inbox.is_symlink() or not self.inbox.exists():
            if self.inbox.is_symlink():
                self.queue.fail(self.inbox, {"file": "feedback", "reason": refusal(self.inbox), "problems": []})
            self.inbox.mkdir(parents=True, exist_ok=True)
            return
        for path in sorted(self.inbox.iterdir(), key=lambda p: p.name):
            if ignored(path.name):
                continue
            reason = refusal(path)
            if reason:
                self.queue.fail(path, {"file": path.name, "reason": reason, "problems": []})
                self.events.emit("refused", f"inbox/feedback/{path.name}: {reason}", file=path.name)
                continue
            if now - os.lstat(path).st_mtime < config.daemon.settle_seconds:
                continue
            sha = sha256_file(path)
            if sha not in self.taken:
                try:
                    verdicts = read_feedback_file(path, config.feedback.max_chars, config.training.max_line_bytes,
                                                  config.training.max_file_bytes)
                except DataError as e:
                    failed = self.queue.fail(path, e.report())
                    self.events.emit("failed", f"inbox/feedback/{path.name}: {e} -> {failed.parent.name}/",
                                     file=path.name, problems=e.problems)
                    continue
                lines = [{"feedback_id": f"{sha[:12]}:{k + 1}", "rating": v.rating, "correction": v.correction,
                          "note": v.note, "exchange": {"id": v.id, "model": v.model, "answer": v.answer,
                                                       **({"messages": [t.model_dump() for t in v.messages]}
                                                          if v.messages is not None else {"prompt": v.prompt})}}
                         for k, v in enumerate(verdicts)]
                read = []
                try:
                    for line in lines:
                        read.append((line, *self._read(line, config)))
                except Exception as e:  # all or nothing: the file fails alone, naming the verdict that failed
                    k = len(read)
                    failed = self.queue.fail(path, {"file": path.name, "reason": f"{type(e).__name__}: {e}",
                                                    "problems": [{"line": k + 1, "reason": f"{type(e).__name__}: {e}"}]})
                    self.events.emit("failed", f"inbox/feedback/{path.name}: line {k + 1}: {e} -> "
                                     f"{failed.parent.name}/", file=path.name)
                    continue
                for taken in read:
                    self._apply(*taken)
                self.taken.append(sha)
                self._save()  # taken before the move: a kill between them moves it at the next start
            durable_replace(path, self.taken_dir / f"{time.strftime('%Y%m%dT%H%M%S')}--{path.name}")

    def _take(self, line: dict, config: Config) -> None:
        self._apply(line, *self._read(line, config))

    def _read(self, line: dict, config: Config) -> tuple[list[dict], QAItem | None]:
        """One verdict's records, and for a correction the question with it as a gate and pool item; nothing
        is changed here (so a file whose later line fails leaves nothing behind)."""
        exchange, fid = line["exchange"], line["feedback_id"]
        if exchange.get("id") is not None and "answer" not in exchange:
            raise ValueError(f"feedback {fid} names exchange {exchange['id']} without its answer")
        conversation = exchange["messages"] if exchange.get("messages") else [
            {"role": "user", "content": exchange["prompt"]}]
        question, answer, correction = conversation[-1]["content"], exchange["answer"], line.get("correction")
        source = {"feedback": fid, "exchange": exchange.get("id"), "model": exchange.get("model")}
        if correction is None:
            return ([_target(conversation, answer, source, "keep")] if line["rating"] == "good" else []), None
        codes = error_codes(question, correction, answer)
        if not codes:  # the answer already says what the correction says: keep it
            new = [_target(conversation, correction, source, "keep")]
        else:
            triple = build_triple(question=question, golden=correction, predicted=answer, codes=codes, step=0,
                                  source=source, templates=config.self_correction.templates)
            if len(conversation) > 1:  # earlier turns are context; only the judged turn is a target
                triple[0] = {"messages": [*_context(conversation), {"role": "assistant", "content": correction}],
                             "kind": "initial_attempt", "error_codes": codes, "source": source}
            new = triple * config.feedback.correction_repeats
        return new, QAItem(f"feedback:{fid}", conversation, correction, "feedback", 0)

    def _apply(self, line: dict, new: list[dict], item: QAItem | None) -> None:
        """A verdict read: its records wait for the next file, a correction joins the gate set and the pool, a
        "bad" with no correction is listed as waiting for one."""
        exchange, fid = line["exchange"], line["feedback_id"]
        self.stats["verdicts"] += 1
        if item is not None:
            self.stats["corrections"] += 1
            self.gate.add([item])
            self.pool.add([item])
        elif line["rating"] == "good":
            self.stats["good"] += 1
        else:
            self.stats["bad"] += 1
            question = (exchange.get("messages") or [{"content": exchange.get("prompt", "")}])[-1]["content"]
            self.waiting.append({"feedback_id": fid, "exchange": exchange.get("id"), "question": question[:200],
                                 "answer": exchange["answer"][:200]})
            self.events.emit("feedback", f"a 'bad' verdict on {exchange.get('id') or 'an exchange'} waits for a "
                             f"correction: {question[:80]!r}", feedback=fid)
        if new and not self.records:
            self.since = time.time()
        self.records += new


def _context(conversation: list[dict]) -> list[dict]:
    return [{**m, "weight": 0} if m["role"] == "assistant" else m for m in conversation]


def _target(conversation: list[dict], response: str, source: dict, kind: str) -> dict:
    if len(conversation) == 1:
        return {"prompt": conversation[0]["content"], "response": response, "kind": kind, "source": source}
    return {"messages": [*_context(conversation), {"role": "assistant", "content": response}], "kind": kind,
            "source": source}
