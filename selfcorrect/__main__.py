"""`python -m selfcorrect TOOL ...`, the older form of `selfcorrect TOOL ...` (codes, build, initial-answers, demo,
rules): forwarded to the command, whose module is cli/tools.py."""
import sys

from cli.main import main

sys.exit(main(sys.argv[1:]))
