"""What a command runs in: the config file and root it names, the event log and the loaded config.

Process-wide effects of a command (environment variables that must be set before transformers is imported) are
scoped to it, so that `cli.main.main([...])` called in-process leaves the process as it found it.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from core.config import Config
from core.errors import ProjectError
from core.events import EventLog

# Set for every command, before tokenizers can be imported: its thread pool warns and deadlocks after a fork.
COMMAND_ENVIRONMENT = {"TOKENIZERS_PARALLELISM": "false"}


@dataclass
class Context:
    config_path: Path
    root: Path
    events: EventLog | None = None  # None for the commands that read no config (status, report, summarize)
    config: Config | None = None


@contextmanager
def scoped_environment():
    """Whatever a command sets in os.environ is undone when it returns."""
    saved = dict(os.environ)
    for key, value in COMMAND_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def event_log(root: Path) -> EventLog:
    """Several processes (accelerate launch, torchrun): rank 0 alone writes the logs."""
    rank = os.environ.get("RANK", "0")
    return EventLog(root / "logs") if rank == "0" else EventLog(None, prefix=f"rank {rank}: ")


def announce(ctx: Context, *, mode: str) -> None:
    """The first log line, for a person: what runs where. The whole resolved config goes to a file beside the
    logs (and beside every adapter version)."""
    from core.device import plan_device
    from core.fsutil import atomic_write_text

    config, root = ctx.config, ctx.root
    plan = plan_device(config.training.precision)
    resolved = root / "logs" / "config.resolved.json"
    atomic_write_text(resolved, config.model_dump_json(indent=2) + "\n")
    ctx.events.emit("start", f"{mode}: model {config.model.name_or_path} on {plan.device} ({plan.precision}), root "
                    f"{root}, pid {os.getpid()}; config {ctx.config_path} (resolved in logs/{resolved.name})",
                    mode=mode, model=config.model.name_or_path, device=plan.device, precision=plan.precision,
                    root=str(root), pid=os.getpid(), config=str(ctx.config_path))


def join_world(config: Config, *, command: str, multi_process: bool):
    """One process, or one rank of several: those join the process group; only the training commands run so."""
    from training.distributed import World

    world = World.from_env()
    if world.size > 1:
        if not multi_process:
            raise ProjectError(f"{command} runs in one process, not under a multi-process launch "
                               f"(WORLD_SIZE={world.size}): only daemon and train run on several")
        x = config.experimental
        if x.preference_weight or x.unlikelihood_weight:
            raise ProjectError("experimental.preference_weight and experimental.unlikelihood_weight train in one "
                               f"process only, not under a multi-process launch (WORLD_SIZE={world.size}): set "
                               "them to 0 or run one process")
        world.join(timeout_seconds=config.daemon.distributed_timeout_seconds, precision=config.training.precision)
    return world
