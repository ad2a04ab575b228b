"""`selfcorrect daemon [--once]`: watch inbox/ and queue/ and train until stopped; --once trains what is queued
(and what is complete in inbox/), then exits."""
from __future__ import annotations

from .options import add_command


def add_parser(sub) -> None:
    p = add_command(sub, "daemon", run=run, multi_process=True,
                    help="watch inbox/ and queue/{high,normal,low}/ and train until stopped",
                    example="selfcorrect daemon        # or: python train.py --daemon")
    p.add_argument("--once", action="store_true", help="train everything queued, then exit (for cron and scripts)")


def run(args, ctx) -> int:
    from daemon.worker import Daemon

    return Daemon(root=ctx.root, config_path=ctx.config_path, config=ctx.config, events=ctx.events,
                  once=args.once).run()
