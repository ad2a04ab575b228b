"""Named fault points for crash and disk-full tests.

`fault_point("name")` does nothing unless a test set one of two environment variables:
- SELFCORRECT_KILL_AT=name: the process SIGKILLs itself right there, as a power cut would;
- SELFCORRECT_FAIL_AT=name: the first time the point is reached in this process it raises
  OSError(ENOSPC), as a full disk would.
The points are listed in FAULT_POINTS.
"""
from __future__ import annotations

import errno
import os
import signal

KILL_ENV, FAIL_ENV = "SELFCORRECT_KILL_AT", "SELFCORRECT_FAIL_AT"
FAULT_POINTS = (
    "queue.admit", "queue.claim", "queue.requeue", "queue.finish", "queue.fail",  # inside each transition
    "checkpoint.staged",  # a mid-file checkpoint written, not yet renamed into place
    "checkpoint.saved",  # a mid-file checkpoint in place, training goes on
    "adapter.staged", "adapter.promoted",  # inside an adapter save: before and after the rename, before state.json
    "adapter.committed",  # state.json written: adapter saved, file not yet moved to done
    "generator.after_pending", "generator.before_metadata", "generator.before_queue",  # a self-correction file
    "feedback.after_taken", "feedback.after_pending",  # verdicts taken (state saved); a feedback file recorded
    "status.write", "events.write",  # data/status.json and the logs (with SELFCORRECT_FAIL_AT: a full disk there)
)
_failed: set[str] = set()


def fault_point(name: str) -> None:
    if os.environ.get(KILL_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get(FAIL_ENV) == name and name not in _failed:
        _failed.add(name)
        raise OSError(errno.ENOSPC, f"No space left on device (injected at {name})")
