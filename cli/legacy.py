"""The older flag forms (`python train.py --daemon`, `--eval FILE --mode ace`, ...) rewritten into commands, the way
lm_eval inserts `run` for its old form. Every option other than the mode flag passes through unchanged: each
command accepts the same option names the old form did."""
from __future__ import annotations

import argparse

# old mode flag -> (the command's words, how many values the flag took: 0, 1 or "+")
MODES = {
    "--daemon": (["daemon"], 0), "--once": (["daemon", "--once"], 0), "--status": (["status"], 0),
    "--report": (["report"], 0), "--serve": (["serve"], 0), "--eval": (["eval"], 1),
    "--summarize": (["harness", "summarize"], 1), "--grid": (["harness", "grid"], 1),
    "--practice": (["practice"], "+"), "--analyze": (["analyze"], 1), "--traces": (["traces"], 1),
    "--rollback": (["rollback"], 1),
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    modes = p.add_mutually_exclusive_group()
    for flag, (_, nargs) in MODES.items():
        if nargs == 0:
            modes.add_argument(flag, action="store_true")
        else:
            modes.add_argument(flag, nargs=None if nargs == 1 else nargs)
    p.add_argument("--mode", default=None)  # --eval TASK --mode baseline|ace is the harness
    return p


def rewrite(argv: list[str]) -> list[str]:
    """The command line of the new form that does what `argv`, an old form, did. A line that already starts
    with a command, or asks for --help or --version, is left as it is."""
    from .main import build_parser

    commands = build_parser().get_default("command_names")
    if not argv or argv[0] in commands or any(a in ("-h", "--help", "--version") for a in argv):
        return argv
    known, rest = parser().parse_known_args(argv)
    for flag, (words, nargs) in MODES.items():
        value = getattr(known, flag[2:])
        if not value:
            continue
        values = [] if nargs == 0 else [value] if nargs == 1 else value
        if flag == "--eval" and known.mode:
            return ["harness", "run", *values, "--mode", known.mode, *rest]
        return [*words, *values, *rest]
    return ["train", *rest, *(["--mode", known.mode] if known.mode else [])]  # FILE ...: the one-shot form
