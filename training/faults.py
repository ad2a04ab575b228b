"""Named kill points for crash tests.

`kill_point("name")` does nothing unless the environment variable
SELFCORRECT_KILL_AT equals "name", in which case the process SIGKILLs itself
right there, as a power cut would. Only tests set the variable; the names are
listed in the README's Reliability section.
"""
from __future__ import annotations

import os
import signal

ENV = "SELFCORRECT_KILL_AT"


def kill_point(name: str) -> None:
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
