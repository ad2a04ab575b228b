"""A rank other than 0 of a multi-process launch: it loads the model, then trains each file rank 0 hands over,
in step with it, until rank 0 says stop. It takes no lock, reads no queue and writes no state or log; its lines
go to the console only (training/distributed.py has the protocol).

    load the model -> receive -> train (in step) -> receive -> ... -> "stop" -> exit 0
"""
from __future__ import annotations

from pathlib import Path

from core.events import EventLog
from training.distributed import World
from training.engine import Prepared, TrainingEngine

from .shutdown import Shutdown, StopOnShutdown


def follow(config, root: Path, events: EventLog, world: World) -> int:
    shutdown = Shutdown()
    shutdown.install()  # a SIGTERM here stops every rank at the same step (StepTogether), rank 0 requeues
    engine = TrainingEngine(config, root, events)
    events.emit("follower", f"model loaded (rank {world.rank} of {world.size}); training what rank 0 hands over")
    while True:
        message = world.receive(stop=shutdown.requested)
        if message["op"] == "stop":
            events.emit("follower", "rank 0 is done; stopping")
            return 0
        if message["op"] == "train":
            prepared = Prepared(Path(message["name"]), message["name"], message["sha256"], [], message["encoded"],
                                [], [])
            engine.state.global_step = message["global_step"]  # its log lines count the steps as rank 0's do
            engine.fit(prepared, callbacks=[StopOnShutdown(shutdown)], resume=message["resume"])
