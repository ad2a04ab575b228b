"""`selfcorrect train FILE...`: train the current adapter on these files, in order, through the daemon's job path.
The files stay where they are; content already trained is skipped."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from .options import add_command


def add_parser(sub) -> None:
    p = add_command(sub, "train", run=run, multi_process=True,
                    help="train the current adapter on these JSONL files, in order (every file checked first)",
                    example="selfcorrect train examples/word_problems.jsonl")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help="JSONL files to train on once, in order")


@contextmanager
def workbench(ctx):
    """What a one-shot command holds while it trains: the root's lock (a daemon on the same root would corrupt the
    state) and the workbench (the model loaded, the vLLM hook, the live monitor)."""
    from daemon.lock import RootLock
    from daemon.queue import Queue
    from daemon.workbench import Workbench
    from daemon.worker import GENERATED_BY

    lock = RootLock(ctx.root).acquire()
    try:
        bench = Workbench.open(ctx.config, ctx.root, ctx.events, outbox=Queue(ctx.root).outbox(GENERATED_BY))
        yield bench
        bench.close(timeout=60)
    finally:
        lock.release()


def run(args, ctx) -> int:
    from daemon.job import train_file

    with workbench(ctx) as bench:
        # Check every file before training any, so a bad file never leaves the job half done.
        prepared = [bench.engine.prepare(f) for f in args.files]
        for p in prepared:
            ctx.events.emit("claimed", f"{p.name}: {len(p.encoded)} examples", file=p.name, sha256=p.sha256)
            train_file(p, engine=bench.engine, monitor=bench.monitor, events=ctx.events, label=p.name, origin=None,
                       once=False)
    return 0
