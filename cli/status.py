"""`selfcorrect status`: queue depth, the file in training and its step, adapter version, last evaluation,
self-correction totals, daemon pid; the last line is the same as JSON. Safe while the daemon runs."""
from __future__ import annotations

from .options import add_command


def add_parser(sub) -> None:
    add_command(sub, "status", run=run, needs_config=False, help="where the daemon stands (safe while it runs)",
                example="selfcorrect status --root ~/mymodel")


def run(args, ctx) -> int:
    from daemon.status import show

    show(ctx.root)
    return 0
