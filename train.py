"""The older entry point, kept as documented: `python train.py --daemon` (the product's primary command),
`python train.py FILE.jsonl`, `--once`, `--status`, `--eval`, `--serve` ... Each form is rewritten into the
command that does the same (`selfcorrect daemon`, `selfcorrect train FILE.jsonl`, ...; cli/legacy.py) and run.
`python train.py --help` lists the commands; `selfcorrect COMMAND --help` each one's options."""
import sys

from cli.legacy import rewrite
from cli.main import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    code = main(rewrite(argv)) if argv else 2
    if not argv:
        print("nothing to do: name files to train, or use --daemon (see --help)", file=sys.stderr)
    # With torch, transformers and peft loaded, the interpreter's last garbage collection walks millions of objects
    # (1.5 s of every run's exit, measured). Nothing is left to collect that matters: every file we write is closed
    # where it is written (and fsynced where it must survive a crash), and logging's atexit handler still runs.
    import gc

    gc.freeze()
    sys.exit(code)
