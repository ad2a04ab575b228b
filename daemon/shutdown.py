"""Graceful stop. Signal handlers only set flags; the training callback turns the flag into a checkpoint.

First SIGTERM/SIGINT: finish the current optimizer step, save a checkpoint, put the
file back at the head of its queue, exit 0. Second: exit at once; every state on
disk is a complete folder or file, so that is as safe as a power cut.
"""
from __future__ import annotations

import os
import signal
import threading

from transformers import TrainerCallback


class Shutdown:
    def __init__(self):
        # An Event rather than a bool so that a long generation can watch it too (a request's `cancel`).
        self.event = threading.Event()
        self.signals = 0
        self.previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.event.is_set()

    def install(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.previous[signum] = signal.signal(signum, self._handle)

    def uninstall(self) -> None:
        """The handlers that were there before: a daemon run in-process (a test) leaves the process as it was."""
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous.clear()

    def _handle(self, signum, frame) -> None:
        self.signals += 1
        if self.signals > 1:
            os._exit(128 + signum)
        self.event.set()


class StopOnShutdown(TrainerCallback):
    """Ends training after the current optimizer step, with a checkpoint, once a stop was requested."""

    def __init__(self, shutdown: Shutdown):
        self.shutdown = shutdown

    def on_step_end(self, args, state, control, **kwargs):
        if not self.shutdown.requested:
            return
        control.should_save = True
        control.should_training_stop = True
