"""The daemon loop: scan -> claim -> train -> finish | fail, one file at a time, one warm model.

`run_once()` is one iteration and returns whether it did any work; `run()` repeats
it and sleeps on the watcher between scans, so an empty queue costs nothing.

Settings reach the components one way: the daemon holds the live config.json
(`LiveConfig`) and hands the config in force to each component at a safe point,
between files (`_apply_config`: the engine and its promotion gate, the monitor and
its generator, the intake). The monitor also looks for an edit at each evaluation, so
`self_correction` switches act mid-file, at the next evaluation. Nothing else reads
config.json.
"""
from __future__ import annotations

import errno
import os
import time
import traceback
from pathlib import Path

from transformers import TrainerCallback

from core.errors import DataError
from core.events import EventLog
from core.faults import fault_point
from core.fsutil import atomic_write_json
from evaluation.analysis import analyze
from evaluation.pool import ValidationPool
from inference.embedding import resolve_embedding_model
from inference.providers import make_provider
from training.distributed import DistributedFault

from .intake import Intake
from .job import train_file
from .live_config import LiveConfig
from .lock import RootLock
from .feedback import ORIGIN as FEEDBACK, FeedbackLoop
from .practice import PracticeFiles
from .queue import PRIORITIES, STAMPED, Job, Queue
from .shutdown import Shutdown, StopOnShutdown
from .watcher import Watcher
from .workbench import Workbench

GENERATED_BY = "selfcorrect"  # the origin mark of the files the self-correction generator queues


class StatusFile(TrainerCallback):
    """data/status.json: what the daemon is doing now, for `train.py --status` from another shell.

    While a file is in hand it follows the events (each `phase`; the `progress` and `step`
    lines with their ETA) and each optimizer step, so `--status` tells the stage, the
    step of the total and how long since the last step, not since the claim.
    """

    def __init__(self, path: Path, events: EventLog):
        self.path, self.events = path, events
        self.fields: dict = {}
        self.began = (time.time(), 0)
        self.failing = False  # the last write failed (said once, until one succeeds)

    def write(self, **fields) -> None:
        self.fields = {"pid": os.getpid(), "updated": time.time(), **fields}
        try:
            fault_point("status.write")
            atomic_write_json(self.path, self.fields)
            self.failing = False
        except OSError as e:  # a full disk: the status is for people; the work goes on, the next write retries
            if not self.failing:
                self.failing = True
                self.events.emit("error", f"cannot write {self.path.name}: {e}; the daemon goes on, and "
                                 "`selfcorrect status` shows older news until the disk has room")

    def _update(self, **fields) -> None:
        if self.fields.get("state") in ("training", "practicing"):
            self.write(**{**self.fields, **fields})

    def on_event(self, record: dict) -> None:
        if record["event"] == "practice" and "done" in record:  # a practice round's progress
            self._update(**{k: record[k] for k in ("done", "problems", "eta_seconds")})
        elif record["event"] == "phase":
            self._update(phase=record["phase"], phase_since=record["time"], detail=record["message"])
        elif record["event"] in ("progress", "step"):
            self._update(**{k: record[k] for k in ("step", "max_steps", "eta_seconds", "tokens_per_s", "loss")
                            if k in record})

    def on_train_begin(self, args, state, control, **kwargs):
        self.began = (time.time(), state.global_step)  # the ETA counts from here (a resumed file starts mid-way)

    def on_step_end(self, args, state, control, **kwargs):
        now, (began, first) = time.time(), self.began
        per_step = (now - began) / max(state.global_step - first, 1)
        self._update(phase="training", step=state.global_step, max_steps=state.max_steps, last_step_at=now,
                     eta_seconds=round(per_step * (state.max_steps - state.global_step), 1))


class Daemon:
    def __init__(self, *, root: Path, config_path: Path, config, events: EventLog, once: bool = False):
        self.root = Path(root)
        self.events = events
        self.once = once
        self.live = LiveConfig(config_path, config, events)
        self.queue = Queue(self.root)
        self.shutdown = Shutdown()
        self.lock = RootLock(self.root)
        self.watcher: Watcher | None = None
        self.workbench: Workbench | None = None
        self.engine = None
        self.status = StatusFile(self.root / "data" / "status.json", events)
        self.retry_at = 0.0
        self.analyzed = 0  # files trained at the last analysis (analysis.every_n_files)

    @property
    def config(self):
        return self.live.current

    # -- start-up ---------------------------------------------------------------------------------

    def start(self) -> None:
        self.lock.acquire()
        self.shutdown.install()
        for job in self.queue.recover():
            self.events.emit("recovered", f"{job.original_name}: back to the head of queue/{job.priority}/",
                             file=job.name)
        self.watcher = Watcher([self.queue.inbox, self.queue.practice_inbox, self.queue.feedback_inbox, *(self.queue.folder(p) for p in PRIORITIES),
                                self.live.path.parent])
        self.watcher.start()
        self.intake = Intake(self.queue, self.events, config=self.config, watcher=self.watcher)
        self.events.listeners.append(self.status.on_event)
        self.workbench = Workbench.open(self.config, self.root, self.events, outbox=self.queue.outbox(GENERATED_BY),
                                        refresh=self.live.latest)
        self.engine, self.monitor = self.workbench.engine, self.workbench.monitor
        self.practice = PracticeFiles(self.queue, self.engine, self.events, self.status)
        self.feedback = FeedbackLoop(self.root, queue=self.queue, outbox=self.queue.outbox(FEEDBACK),
                                     gate=self.engine.gate.items, pool=self.monitor.pool, events=self.events)
        self.status.write(state="idle", adapter=self.engine.state.current_adapter)
        self.events.emit("daemon", f"watching {self.queue.inbox} and {self.queue.base}/{{high,normal,low}} "
                         f"(pid {os.getpid()})", pid=os.getpid())

    def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        self.status.write(state="stopped")
        self.lock.release()
        if self.workbench:
            self.workbench.close(timeout=10)
        self.shutdown.uninstall()

    # -- the loop ---------------------------------------------------------------------------------

    def run(self) -> int:
        self.start()
        try:
            while not self.shutdown.requested:
                worked = self.run_once()
                if self.once and not worked and not self.intake.waiting and not self.queue.pending():
                    break
                if not worked:
                    self._idle()
                if self.engine.world.poll(stop=self.shutdown.requested):  # another rank got a SIGTERM
                    self.shutdown.event.set()
        finally:
            self.stop()
        self.events.emit("daemon", "stopped cleanly" if self.shutdown.requested else "queue empty; exiting (--once)")
        return 0

    def _idle(self) -> None:
        """Sleep until a watch event or the next scan; short slices so a signal is seen at once."""
        deadline = time.monotonic() + self.config.daemon.scan_interval_seconds
        while not self.shutdown.requested and time.monotonic() < deadline:
            if self.watcher.wake.wait(timeout=min(0.5, max(0.0, deadline - time.monotonic()))):
                self.watcher.wake.clear()
                return

    def run_once(self, now: float | None = None) -> bool:
        """One iteration: apply config edits, admit complete files, then the next piece of work: a file of
        `practice.queue` priority or above, else a practice file's next step, else any file. True if it worked."""
        now = time.time() if now is None else now
        self._apply_config()
        self.intake.scan(now)
        if now < self.retry_at:
            return False
        self._feedback()
        job = self.queue.claim(up_to=self.config.practice.queue)
        if job is None and self._practice():
            return True
        job = job or self.queue.claim()
        if job is None:
            return False
        self.process(job)
        self._analysis()
        return True

    def _apply_config(self) -> None:
        """The safe point between files: every component takes the config in force (edits may have come mid-file)."""
        self.live.poll()
        self.engine.config = self.intake.config = self.config
        self.monitor.apply(self.config)

    def _feedback(self) -> None:
        """Verdicts on served answers into a training file (daemon/feedback.py); a full disk pauses the loop."""
        try:
            self.feedback.step(self.config)
        except Exception as e:  # a full disk, or a bug: said and retried; never the daemon
            self.retry_at = time.time() + self.config.daemon.scan_interval_seconds
            self.events.emit("error", f"feedback: {type(e).__name__}: {e}; retrying in "
                             f"{self.config.daemon.scan_interval_seconds:.0f}s (nothing taken is lost: it is in "
                             "data/feedback/state.json)")

    def _practice(self) -> bool:
        """The next step of the first practice file that can take one (see daemon/practice.py); True if one did."""
        for path in self.queue.practice_files():
            try:
                if self.practice.advance(path, self.config, cancel=self.shutdown.event):
                    return True
            except DistributedFault:
                raise  # the ranks broke apart, not the file: a restart resumes it
            except Exception as e:
                self._set_aside(e, path, STAMPED.sub("", path.name), path.name, put_back=None, where="queue/practice/")
                return True  # set aside (or, on an OSError, the pause begins: the next iteration waits)
        return False

    def _set_aside(self, e: Exception, path: Path, label: str, name: str, *, put_back, where: str) -> None:
        """A file whose work raised: bad data or a bug fails it, with the reason beside it; an OSError (a full
        disk and the like: the file is fine, the machine is not) leaves it in `where` and pauses the loop."""
        if isinstance(e, OSError):
            if put_back:
                put_back()
            wait = self.config.daemon.retry_after_seconds
            self.retry_at = time.time() + wait
            hint = " (disk full)" if e.errno == errno.ENOSPC else ""
            self.events.emit("error", f"{label}: {e}{hint}; nothing partial was kept, the file is back in {where}, "
                             f"retrying in {wait:.0f}s", file=name)
            return
        if isinstance(e, DataError):
            self.queue.fail(path, e.report())
            self.events.emit("failed", str(e), file=name, problems=e.problems)
            return
        self.queue.fail(path, {"file": label, "reason": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(),
                               "problems": []})
        self.events.emit("failed", f"{label}: {type(e).__name__}: {e}", file=name)

    def _analysis(self) -> None:
        """`analysis.every_n_files`: failure analysis (steps 1-5 of `--analyze`) on the promotion gate's set with the
        warm model, after every N trained files, into data/analysis/auto-<files>-<adapter>/; the top patterns go to
        the log. Between files, like every other use of the model."""
        settings, trained = self.config.analysis, len(self.engine.state.files_trained)
        if not settings.every_n_files or not trained or trained % settings.every_n_files or trained == self.analyzed:
            return
        self.analyzed = trained
        items = ValidationPool(self.root, folder="gate").items
        if not items:
            self.events.emit("analysis", "no gate items to analyse: failure analysis in the daemon reads the promotion "
                             "gate's set (training.promotion.enabled, holdout_fraction)")
            return
        adapter = self.engine.state.head or "base"  # the warm model: the training head
        sampler = self.engine.sampler()
        make_judge = None if settings.judge == "fast" else lambda: make_provider("judge", self.config, self.root,
                                                                                 engine=sampler)
        try:
            embedding_model = resolve_embedding_model(settings.embedding_model, self.config, self.root)
            analyze(items, self.root / "data" / "analysis" / f"auto-{trained:05d}-{adapter}",
                    load_engine=lambda: (sampler, adapter), events=self.events, sample=settings.sample,
                    seed=self.config.training.seed, max_new_tokens=self.config.eval_max_tokens,
                    make_judge=make_judge, batch_size=settings.batch_size, embedding_model=embedding_model)
        except Exception as e:  # an analysis is a report: it never stops the training
            self.events.emit("error", f"failure analysis after {trained} files: {type(e).__name__}: {e}")

    # -- one file ---------------------------------------------------------------------------------

    def process(self, job: Job) -> None:
        """claim -> train -> finish | fail. Every outcome leaves the file in exactly one folder."""
        self.events.emit("claimed", f"{job.original_name} from queue/{job.priority}/", file=job.name,
                         priority=job.priority)
        self.status.write(state="training", file=job.original_name, priority=job.priority, step=0,
                          global_step=self.engine.state.global_step)
        try:
            prepared = self.engine.prepare(job.path, name=job.original_name, generated=job.origin is not None,
                                           examples=self.intake.parsed(job))
            outcome = train_file(prepared, engine=self.engine, monitor=self.monitor, events=self.events,
                                 label=job.name, origin=job.origin, once=self.once,
                                 callbacks=[StopOnShutdown(self.shutdown), self.status],
                                 context={"priority": job.priority},
                                 finish=lambda manifest: self.queue.finish(job, manifest))
            if outcome.status == "interrupted":
                self.queue.requeue(job)
                self.events.emit("requeued", f"{job.original_name}: stopped at step {outcome.steps}, checkpoint "
                                 f"saved; back at the head of queue/{job.priority}/", file=job.name)
        except DistributedFault:
            self.queue.requeue(job)  # the ranks broke apart, not the file: back to the head of its queue
            self.events.emit("requeued", f"{job.original_name}: the ranks broke apart mid-file; back at the head of "
                             f"queue/{job.priority}/", file=job.name)
            raise
        except Exception as e:
            self._set_aside(e, job.path, job.original_name, job.name, put_back=lambda: self.queue.requeue(job),
                            where=f"queue/{job.priority}/")
        finally:
            self.status.write(state="idle", adapter=self.engine.state.current_adapter,
                              global_step=self.engine.state.global_step)

