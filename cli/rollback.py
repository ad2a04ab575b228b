"""`selfcorrect rollback VERSION`: move the training head back to a committed version (or `base`, a fresh adapter),
so that the next file trains from it. What is served (`current`) does not move; no version is deleted. For a head
the promotion gate keeps refusing (the `alarm` in the log, --status and the page)."""
from __future__ import annotations

from .options import add_command


def add_parser(sub) -> None:
    p = add_command(sub, "rollback", run=run,
                    help="move the training head back to a version (the next file trains from it); stop the daemon "
                         "first",
                    example="selfcorrect rollback v0003        # or: python train.py --rollback v0003")
    p.add_argument("version", metavar="VERSION", help="a committed version (v0003), current, or base (a fresh adapter)")


def run(args, ctx) -> int:
    from core.errors import ProjectError
    from core.state import TrainingState
    from daemon.lock import RootLock

    path = ctx.root / "data" / "state.json"
    lock = RootLock(ctx.root).acquire()  # the daemon holds it while it runs: the head must not move mid-file
    try:
        state = TrainingState.load(path)
        version = {"base": None, "current": state.current_adapter}.get(args.version, args.version)
        if version is not None and version not in state.versions:
            raise ProjectError(f"rollback {args.version}: no committed version of that name under {ctx.root}; "
                               f"the versions are: {', '.join(state.versions) or 'none yet'} (or base)")
        before, state.head, state.refused_in_a_row = state.head, version, 0
        state.save(path)
        (ctx.root / "data" / "gate" / "alarm.json").unlink(missing_ok=True)
    finally:
        lock.release()
    ctx.events.emit("rollback", f"the training head moved from {before or 'a fresh adapter'} to "
                    f"{version or 'a fresh adapter'}; {state.current_adapter or 'the base model'} is served; the next "
                    "file trains from the head", head=version, previous=before, current=state.current_adapter)
    return 0
