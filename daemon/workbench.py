"""What training holds while it runs, in the daemon and in the one-shot commands alike: the vLLM hook, the
training engine with its model loaded, and the live monitor attached to it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from core.events import EventLog
from core.outbox import Outbox
from daemon.vllm import attach_vllm_notifier
from monitor.live_inference import attach_monitor


@dataclass
class Workbench:
    notifier: object
    engine: object
    monitor: object

    @classmethod
    def open(cls, config, root: Path, events: EventLog, *, outbox: Outbox,
             refresh: Callable | None = None) -> "Workbench":
        """The model is loaded here (seconds): the caller holds the root's lock first."""
        from training.engine import TrainingEngine

        notifier = attach_vllm_notifier(config, root, events)
        engine = TrainingEngine(config, root, events)
        monitor = attach_monitor(engine, root=root, config=config, outbox=outbox, events=events, refresh=refresh)
        return cls(notifier=notifier, engine=engine, monitor=monitor)

    def close(self, *, timeout: float) -> None:
        """A call to vLLM in flight may end within `timeout`; one still retrying ends with the process."""
        if self.notifier:
            self.notifier.wait(timeout=timeout)
