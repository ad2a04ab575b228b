"""A rich progress bar per file: steps, loss, supervised tokens/s, ETA."""
from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from transformers import TrainerCallback


class ProgressCallback(TrainerCallback):
    def __init__(self, *, title: str, collator, console: Console, on_log=None):
        self.title = title
        self.collator = collator  # counts supervised tokens as batches are built
        self.console = console
        self.on_log_line = on_log  # called with (step, loss, tokens_per_s) at each Trainer log
        self.progress: Progress | None = None
        self.task = None
        self.loss = float("nan")
        self.started = 0.0
        self.tokens_at_start = 0

    def tokens_per_s(self) -> float:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        return (self.collator.supervised_tokens - self.tokens_at_start) / elapsed

    def on_train_begin(self, args, state, control, **kwargs):
        self.started, self.tokens_at_start = time.perf_counter(), self.collator.supervised_tokens
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  {task.fields[tps]:.0f} tok/s"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self.progress.start()
        self.task = self.progress.add_task(self.title, total=state.max_steps, completed=state.global_step, loss=self.loss, tps=0.0)

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is None:
            return
        self.progress.update(self.task, completed=state.global_step, loss=self.loss, tps=self.tokens_per_s())

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "loss" not in logs:
            return
        self.loss = float(logs["loss"])
        if self.on_log_line:
            self.on_log_line(state.global_step, self.loss, self.tokens_per_s())

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
