"""Options that several commands share, declared once as parent parsers."""
from __future__ import annotations

import argparse
from pathlib import Path

from core.importers import FORMATS


def positive(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {value})")
    return value


def _parent() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(add_help=False)


ROOT = _parent()
ROOT.add_argument("--config", type=Path, default=None, help="config file (default: ./config.json)")
ROOT.add_argument("--root", type=Path, default=None,
                  help="folder holding inbox/ queue/ data/ logs/ (default: the config file's folder)")

ADAPTER = _parent()
ADAPTER.add_argument("--adapter", default="current", help="current, base, or a version such as v0003 (default: current)")

DATASET = _parent()
DATASET.add_argument("--dataset", choices=FORMATS, default=None, help="the file's format (default: our own JSONL)")
DATASET.add_argument("--skip-bad", action="store_true",
                     help="with --dataset: skip bad rows (listed) instead of refusing the file")

LIMIT = _parent()
LIMIT.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N questions")


def add_command(subparsers, name: str, *, help: str, example: str, parents=(), run, needs_config: bool = True,
                multi_process: bool = False) -> argparse.ArgumentParser:
    """A command's parser with its one-line help, a usage example, the shared `parents` and what runs it.
    `needs_config`: the command reads config.json (and logs its start); `multi_process`: it may run as one rank of
    several (accelerate launch, torchrun). `args.parser.error(...)` refuses options that do not go together."""
    p = subparsers.add_parser(name, help=help, description=help, parents=[ROOT, *parents],
                              epilog=f"example:\n  {example}", formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(run=run, needs_config=needs_config, multi_process=multi_process, mode_name=name, parser=p)
    return p
