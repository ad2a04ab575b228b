"""Practice files in the daemon: rounds of sample -> verify -> queue -> train, read from disk at every step.

    inbox/practice/ --admit--> queue/practice/ --its rounds trained, or nothing to train--> queue/done/
                                            \\--a round's file failed, or it no longer reads--> queue/failed/

A practice file stays in queue/practice/ through its rounds. Where it stands is never held in memory: round r
of it, in its work folder data/practice/<stem>-<sha12>/ (the same as `train.py --practice`), is

    round-r.jsonl absent                      -> sample it from the current adapter (resuming its progress file)
    round-r.jsonl empty                       -> nothing to train (rest: nothing verified, no golden solution;
                                                 grpo: every group scored alike): the file is done
    its content trained (data/state.json)     -> on to round r+1; after `practice.rounds`, the file is done
    queued, waiting or in training            -> wait: the queue trains it as any file, at `practice.queue`
    failed since the practice file arrived    -> the practice file fails, naming it
    otherwise                                 -> queue it

so a kill at any moment resumes at the same step. A kill between queueing a round and noting it cannot happen:
the queue is the note (a round file is found by its name, which holds the practice file's name and hash).
"""
from __future__ import annotations

import json
import threading
from pathlib import Path

from core.config import Config
from core.events import EventLog
from core.practice import read_problems
from selfcorrect.practice import nothing_to_train, practice_round, round_name, work_folder
from core.fsutil import sha256_file
from training.engine import TrainingEngine

from .queue import PRACTICE, STAMPED, Job, Queue

ORIGIN = "practice"  # the origin mark of a round's training file in the queue


class PracticeFiles:
    def __init__(self, queue: Queue, engine: TrainingEngine, events: EventLog, status):
        self.queue, self.engine, self.events, self.status = queue, engine, events, status

    def advance(self, path: Path, config: Config, cancel: threading.Event) -> bool:
        """Take the next step of this practice file, if it has one now (False: it waits for its round's training).
        Raises DataError if the file no longer reads (edited in place since it was admitted)."""
        label = STAMPED.sub("", path.name)
        work = work_folder(self.queue.root, path, name=label)
        settings = config.practice
        for round_no in range(1, settings.rounds + 1):
            out, name = work / f"round-{round_no}.jsonl", round_name(work, round_no)
            if not out.exists():
                problems = read_problems(path, max_line_bytes=config.training.max_line_bytes,
                                         max_file_bytes=config.training.max_file_bytes)
                self.status.write(state="practicing", file=label, round=round_no, rounds=settings.rounds,
                                  done=0, problems=len(problems), adapter=self.engine.state.head)
                try:
                    sampled = practice_round(self.engine, problems, work, round_no, label=label, settings=settings,
                                             events=self.events, cancel=cancel)
                finally:
                    self.status.write(state="idle", adapter=self.engine.state.current_adapter)
                if sampled is None:
                    self.events.emit("practice", f"{label} round {round_no}: stopped; what was verified is kept, "
                                     "the rest is sampled at the next start", file=label)
                    return True
                return True  # queued at the next step, after a look at the training queue
            if out.stat().st_size == 0:
                self._finish(path, label, work, round_no, nothing_to_train(settings))
                return True
            if self.engine.state.trained(sha256_file(out)):
                continue
            where = self.queue.where(name, since=path.name)
            if where == "waiting":
                return False
            if where == "failed":
                self.queue.fail(path, {"file": label, "problems": [], "reason": (
                    f"round {round_no}'s training file {name} failed (see its .error.json in queue/failed/); drop "
                    "the practice file again to retry")})
                self.events.emit("failed", f"{label}: round {round_no}'s training file {name} failed", file=path.name)
                return True
            queued = self.queue.add(name, out.read_bytes(), settings.queue, origin=ORIGIN)
            self.events.emit("queued", f"{label} round {round_no}: {name} -> queue/{settings.queue}/{queued.name}",
                             file=queued.name, priority=settings.queue)
            return True
        self._finish(path, label, work, settings.rounds, "every round trained")
        return True

    def _finish(self, path: Path, label: str, work: Path, last: int, why: str) -> None:
        rounds = []
        for round_no in range(1, last + 1):
            meta = work / f"round-{round_no}.meta.json"
            if meta.exists():
                rounds.append(json.loads(meta.read_text()))
        self.queue.finish(Job(path, PRACTICE, path.name), {"practice": work.name, "rounds": rounds, "why": why})
        figures = "; ".join(f"round {r['round']}: pass@1 {r['pass_at_1']:.0%}, pass@K {r['pass_at_k']:.0%}, "
                            f"{r['kept']} kept" for r in rounds)
        self.events.emit("practice", f"{label}: practice done ({why}); {figures}", file=path.name,
                         practice=work.name, finished=True)
