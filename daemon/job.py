"""One path per job: how a prepared file is trained, whatever started it (`train.py FILE` or the daemon).

    dedupe -> the monitor starts the file -> train, judge and commit (the engine) -> finish -> `done`

The caller owns where the file lives: the daemon's `finish` moves it to queue/done/ with
its manifest, before the `done` event announces it; the one-shot mode leaves the file
where it is. An interrupted file is the caller's to put back.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from core.events import EventLog
from monitor.live_inference import LiveInferenceMonitor
from training.engine import Prepared, TrainingEngine


@dataclass
class Outcome:
    status: str  # "duplicate", "trained", or "interrupted" (a checkpoint was saved; train it again to resume)
    manifest: dict = field(default_factory=dict)  # trained: the record kept beside the file in queue/done/
    steps: int = 0


def train_file(prepared: Prepared, *, engine: TrainingEngine, monitor: LiveInferenceMonitor, events: EventLog,
               label: str, origin: str | None, once: bool, callbacks=(), context: dict | None = None,
               finish: Callable[[dict], object] | None = None) -> Outcome:
    """Train one prepared file into a new adapter version, unless its content was trained already.

    `label` names the file in events; `origin` names the generator that wrote it (None: a
    user's file); a generated file's questions join no pool, and in `once` mode it
    generates nothing more. `context` (the queue priority) joins the manifest, and
    `finish(manifest)` files the file away once it is trained or found a duplicate.
    """
    started = time.perf_counter()
    trained = engine.state.trained(prepared.sha256)
    if trained:
        manifest = {"sha256": prepared.sha256, "duplicate_of": trained}
        if finish:
            finish(manifest)
        events.emit("duplicate", f"{prepared.name}: same content already trained into adapter "
                    f"{trained['adapter']} ({trained['name']}); not trained again", file=label)
        return Outcome("duplicate", manifest)

    monitor.start_file(prepared, generated=origin is not None, once=once)
    result = engine.train(prepared, callbacks=[*callbacks, monitor])
    if result.status == "interrupted":
        return Outcome("interrupted", steps=result.steps)

    record = engine.state.trained(prepared.sha256)
    manifest = {"sha256": prepared.sha256, "examples": len(prepared.encoded), "tokens": record["tokens"],
                "supervised_tokens": record["supervised_tokens"], "heldout": len(prepared.heldout),
                "gate_heldout": len(prepared.gate),
                "steps": result.steps, "adapter": result.version, "promoted": result.promoted,
                "current": engine.state.current_adapter, "seconds": round(time.perf_counter() - started, 3),
                "train_seconds": round(result.seconds, 3), "loop_seconds": round(result.loop_seconds, 3),
                "final_loss": result.final_loss, "tokens_per_s": round(result.tokens_per_s, 1),
                "global_step": engine.state.global_step, "origin": origin or "user",
                **(context or {})}
    if finish:
        finish(manifest)
    events.emit("done", f"{prepared.name}: {result.steps} steps in {manifest['seconds']:.1f}s, loss "
                f"{result.final_loss:.4f}, {result.tokens_per_s:.0f} tok/s -> adapter {result.version}"
                f"{'' if result.promoted else ' (not promoted)'}", file=label, **manifest)
    return Outcome("trained", manifest, result.steps)
