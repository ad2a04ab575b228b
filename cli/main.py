"""`selfcorrect COMMAND ...`: parse, find the config and root, hand off to the command's module.

Phases: parse arguments -> locate config and root -> (commands that read it) load the config, join the ranks of a
multi-process launch, log the start -> the command's `run(args, ctx)`.
"""
from __future__ import annotations

import argparse
import os
import sys
from importlib.metadata import PackageNotFoundError, version

from core.config import load_config, locate, names_hub_model
from core.errors import ProjectError

from . import analyze, daemon, eval, harness, practice, report, rollback, serve, status, tools, traces, train
from .context import Context, announce, event_log, join_world, scoped_environment

COMMANDS = (train, daemon, status, report, rollback, eval, harness, practice, analyze, traces, serve, tools)
PROG = "selfcorrect"


def product_version() -> str:
    try:
        return version("selfcorrect-daemon")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


class CommandParser(argparse.ArgumentParser):
    """An option of another command is refused naming the commands it goes with."""

    owners: dict[str, list[str]] = {}

    def error(self, message: str):
        if message.startswith("unrecognized arguments:"):
            hints = [f"{o} goes with {' or '.join(self.owners[o])}" for o in message.split()[2:]
                     if o.split("=")[0] in self.owners]
            message += f" ({'; '.join(hints)})" if hints else ""
        super().error(message)


def option_owners(sub, prefix: str = "") -> dict[str, list[str]]:
    """Each command option -> the commands that take it (`harness run` for a nested one)."""
    owners: dict[str, list[str]] = {}
    for name, parser in sub.choices.items():
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for option, names in option_owners(action, f"{prefix}{name} ").items():
                    owners.setdefault(option, []).extend(names)
            for option in action.option_strings:
                if option not in ("-h", "--help", "--config", "--root"):
                    owners.setdefault(option, []).append(prefix + name)
    return owners


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(prog=PROG, description="Continual LoRA training daemon with self-correction.",
                                epilog=f"example:\n  {PROG} daemon      # train what you drop into inbox/\n"
                                       f"  {PROG} COMMAND --help   # a command's options",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"%(prog)s {product_version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    p.set_defaults(command_names=frozenset(sub.choices))
    CommandParser.owners = option_owners(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with scoped_environment():
        return dispatch(args)


def dispatch(args: argparse.Namespace) -> int:
    ctx = Context(*locate(getattr(args, "config", None), getattr(args, "root", None)))
    if not args.needs_config:
        try:
            return args.run(args, ctx)
        except ProjectError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    ctx.events = event_log(ctx.root)
    try:
        ctx.config = load_config(ctx.config_path)
        if not names_hub_model(ctx.config, ctx.root):
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: no network at all
        world = join_world(ctx.config, command=args.command, multi_process=args.multi_process)
        try:
            if not world.main:
                from daemon.follower import follow

                return follow(ctx.config, ctx.root, ctx.events, world)
            announce(ctx, mode=args.mode_name + (" --once" if getattr(args, "once", False) else ""))
            try:
                return args.run(args, ctx)
            finally:
                world.release()  # the other ranks stop with rank 0, however it ends
        finally:
            world.leave()
    except ProjectError as e:
        ctx.events.emit("error", str(e))
        return 1


def console_script() -> None:
    """The installed `selfcorrect` command."""
    sys.exit(main())
