"""`selfcorrect report`: logs/report.png and logs/report.html, accuracy and loss against the global step."""
from __future__ import annotations

from .options import add_command


def add_parser(sub) -> None:
    add_command(sub, "report", run=run, needs_config=False,
                help="write logs/report.png and logs/report.html (accuracy and loss against the global step)",
                example="selfcorrect report")


def run(args, ctx) -> int:
    from monitor.report import write_report

    png, page = write_report(ctx.root)
    print(f"wrote {png} and {page}")
    return 0
