"""Training progress for people: where a file stands, its speed and its ETA, at least every `quiet_seconds`.

On a terminal, a rich progress bar. In the log (and on a console that is not a
terminal), a `progress` line at each `training.logging_steps` (with the loss), and a
`step` line at the last step end before `training.quiet_seconds` pass without one (judged
by the step just taken), so a working daemon is never silent for long.
"""
from __future__ import annotations

import time

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from transformers import TrainerCallback

from core.events import duration


class ProgressCallback(TrainerCallback):
    def __init__(self, *, title: str, collator, events, step_offset: int, on_loss=None, quiet_seconds: float = 30.0):
        self.title = title
        self.quiet_seconds = quiet_seconds
        self.collator = collator  # counts supervised tokens as batches are built
        self.events = events
        self.step_offset = step_offset  # global steps before this file
        self.on_loss = on_loss  # called with each logged loss
        self.bar: Progress | None = None
        self.task = None
        self.loss = float("nan")
        self.started = self.last_line = self.last_step = 0.0
        self.tokens_at_start = 0
        self.first_step = 0  # the file's step training (re)started from

    def tokens_per_s(self) -> float:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        return (self.collator.supervised_tokens - self.tokens_at_start) / elapsed

    def eta(self, state) -> float | None:
        done = state.global_step - self.first_step
        if done <= 0:
            return None
        return (time.perf_counter() - self.started) / done * (state.max_steps - state.global_step)

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = self.last_line = self.last_step = time.perf_counter()
        self.tokens_at_start, self.first_step = self.collator.supervised_tokens, state.global_step
        resumed = f", resuming at step {state.global_step}" if state.global_step else ""
        self.events.phase("training", f"{self.title}: training {state.max_steps} steps{resumed}", file=self.title,
                          max_steps=state.max_steps)
        if self.events.console.is_terminal:
            self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("loss {task.fields[loss]:.4f}  {task.fields[tps]:.0f} tok/s"),
                                TimeRemainingColumn(), console=self.events.console, transient=True)
            self.bar.start()
            self.task = self.bar.add_task(self.title, total=state.max_steps, completed=state.global_step,
                                          loss=self.loss, tps=0.0)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(self.task, completed=state.global_step, loss=self.loss, tps=self.tokens_per_s())
        now = time.perf_counter()
        step_seconds, self.last_step = now - self.last_step, now
        if now - self.last_line + step_seconds >= self.quiet_seconds:  # the next step would end past the limit
            self._line("step", state)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "loss" not in logs:
            return
        self.loss = float(logs["loss"])
        if self.on_loss:
            self.on_loss(self.loss)
        self._line("progress", state, loss=self.loss)

    def _line(self, kind: str, state, **fields) -> None:
        self.last_line = time.perf_counter()
        eta, tps = self.eta(state), self.tokens_per_s()
        loss = f" loss {fields['loss']:.4f}" if "loss" in fields else ""
        self.events.emit(kind, f"{self.title}: step {state.global_step}/{state.max_steps} (global "
                         f"{self.step_offset + state.global_step}){loss}, {tps:.0f} tok/s, ETA {duration(eta)}",
                         file=self.title, global_step=self.step_offset + state.global_step, step=state.global_step,
                         max_steps=state.max_steps, tokens_per_s=round(tps, 1),
                         eta_seconds=None if eta is None else round(eta, 1), **fields)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
